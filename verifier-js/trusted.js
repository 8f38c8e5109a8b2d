// Trusted block hashes from text: every 0x-prefixed 32-byte hex string outside # comments.
export function trustedFromText(text) {
  const found = new Set();
  for (const line of text.split("\n")) {
    for (const h of line.split("#")[0].match(/0x[0-9a-fA-F]{64}/g) ?? []) found.add(h.toLowerCase());
  }
  return found;
}
