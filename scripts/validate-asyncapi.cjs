// Validates an AsyncAPI document with the AsyncAPI Initiative's own parser
// (@asyncapi/parser 3.x, which scripts/setup installs under
// ~/.cache/orderflow/asyncapi-parser; run with NODE_PATH pointing at its
// node_modules). Prints every diagnostic, then one JSON line of what the
// parsed document holds: channel addresses, operations (action, channel),
// messages with their payload's required fields. Exits 1 on any error.
//
//   NODE_PATH=... node scripts/validate-asyncapi.cjs docs/asyncapi.json
const { readFileSync } = require('node:fs');
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');

async function main(path) {
  const { document, diagnostics } = await new Parser().parse(readFileSync(path, 'utf8'));
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    console.error(`${DiagnosticSeverity[d.severity]} ${d.code}: ${d.message} at ${JSON.stringify(d.path)}`);
  }
  if (!document || errors.length > 0) {
    console.error(`${path}: ${errors.length} error(s)`);
    process.exit(1);
  }
  const summary = {
    version: document.version(),
    channels: document.channels().all().map((c) => c.address()),
    operations: document.operations().all().map((o) => ({
      id: o.id(),
      action: o.action(),
      channel: o.channels().all().map((c) => c.address()),
    })),
    messages: Object.fromEntries(document.messages().all().map((m) => [
      m.name(),
      m.payload() ? (m.payload().required() || []) : [],
    ])),
  };
  console.log(JSON.stringify(summary));
}

main(process.argv[2]).catch((error) => {
  console.error(error);
  process.exit(1);
});
