// Parse an AsyncAPI document with the official parser; exit 1 on any error diagnostic.
import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'fs';
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], 'utf8'));
const errors = diagnostics.filter(d => d.severity === 0);
for (const d of diagnostics) console.log(JSON.stringify({severity: d.severity, code: d.code, message: d.message, path: d.path.join('.')}));
process.exit(errors.length || !document ? 1 : 0);
