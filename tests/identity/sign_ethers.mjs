// Signs ChainSense readings with ethers v6, for the cross-library tests.
// stdin:  {"items": [{"key": "0x…", "domain": {…}, "types": {…}, "message": {…}}, …]}
//         (integers as decimal strings; "types" without EIP712Domain)
// stdout: {"ethers": "6.x", "results": [{"signature": "0x…", "digest": "0x…", "address": "0x…"}]}
import { TypedDataEncoder, Wallet, version } from "ethers";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { items } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const wallets = new Map();
const results = [];
for (const { key, domain, types, message } of items) {
  let wallet = wallets.get(key);
  if (wallet === undefined) {
    wallet = new Wallet(key);
    wallets.set(key, wallet);
  }
  results.push({
    signature: await wallet.signTypedData(domain, types, message),
    digest: TypedDataEncoder.hash(domain, types, message),
    address: wallet.address,
  });
}
process.stdout.write(JSON.stringify({ ethers: version, results }));
