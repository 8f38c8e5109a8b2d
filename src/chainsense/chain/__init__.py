"""The chain side of ChainSense: client, dev chain, deployments."""

from chainsense.chain.client import ChainClient, Signer
from chainsense.chain.deploy import (
    BytecodeCheck,
    Deployment,
    DeploymentStore,
    SettlementParams,
    check_bytecode,
    deploy_core,
    deploy_settlement,
    ensure_deployed,
    verify_deployment,
)
from chainsense.chain.devchain import DevChain, find_anvil
from chainsense.chain.runtime import ChainContext, open_chain

__all__ = [
    "BytecodeCheck",
    "ChainClient",
    "ChainContext",
    "Deployment",
    "DeploymentStore",
    "DevChain",
    "SettlementParams",
    "Signer",
    "check_bytecode",
    "deploy_core",
    "deploy_settlement",
    "ensure_deployed",
    "find_anvil",
    "open_chain",
    "verify_deployment",
]
