// Runs seam's push business rule the way a ServiceNow instance runs it, with the
// platform's APIs shimmed: `current` (a GlideRecord), `gs`, `sn_ws.RESTMessageV2`,
// `GlideCertificateEncryption`, `GlideStringUtil` and `GlideDateTime`. For each example of the
// notification contract it evaluates the rule's condition (for the example's
// user, and for the integration user), runs the script, and prints one JSON line
// with the request the script made.
//
// Usage: node run-rule.mjs RULE.json CONTRACT.json
//   RULE.json: {"script": "...", "condition": "...", "prefix": "seam.acme.", "endpoint": "https://…"}
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";

const [rulePath, contractPath] = process.argv.slice(2);
const rule = JSON.parse(readFileSync(rulePath, "utf8"));
const contract = JSON.parse(readFileSync(contractPath, "utf8"));
const INTEGRATION_USER = "seam.integration";

// A Java ArrayList as global-scope scripts see it: size() and get(i), not length.
function javaList(items) {
  return { size: () => items.length, get: (i) => items[i] };
}

function glideRecord(example) {
  const byName = new Map(example.elements.map((e) => [e.name, e]));
  const elements = example.elements.map((e) => ({
    getName: () => e.name,
    getED: () => ({ getInternalType: () => e.type }),
    getDisplayValue: () => (e.display !== undefined ? e.display : e.value ?? ""),
    getJournalEntry: (n) => {
      if (n !== 1) throw new Error("the rule asks for the latest entry only");
      return e.journal ?? "";
    },
  }));
  return {
    operation: () => example.operation,
    getTableName: () => example.table,
    getElements: () => javaList(elements),
    // getValue answers null for an empty field.
    getValue: (name) => {
      const e = byName.get(name);
      return e && e.value ? e.value : null;
    },
  };
}

function gsFor(user, example, log) {
  const properties = {
    [rule.prefix + "endpoint"]: rule.endpoint,
    [rule.prefix + "secret"]: example.secret,
    [rule.prefix + "integration_user"]: INTEGRATION_USER,
  };
  return {
    getProperty: (name, fallback) => (name in properties ? properties[name] : fallback),
    getUserName: () => user,
    sleep: () => {},
    warn: (m) => log.push(["warn", m]),
    error: (m) => log.push(["error", m]),
  };
}

for (const example of contract.examples) {
  const log = [];
  const sent = [];
  const sn_ws = {
    RESTMessageV2: class {
      constructor() {
        this.request = { headers: {} };
      }
      setEndpoint(url) { this.request.endpoint = url; }
      setHttpMethod(method) { this.request.method = method; }
      setRequestHeader(name, value) { this.request.headers[name] = value; }
      setRequestBody(body) { this.request.body = body; }
      setHttpTimeout(ms) { this.request.timeout = ms; }
      execute() {
        sent.push(this.request);
        return { getStatusCode: () => 202, getBody: () => '{"accepted":1,"duplicates":0}' };
      }
    },
  };
  const GlideCertificateEncryption = class {
    // The key arrives Base64-encoded; the MAC leaves Base64-encoded.
    generateMac(key, algorithm, data) {
      if (algorithm !== "HmacSHA256") throw new Error("unexpected algorithm " + algorithm);
      return createHmac("sha256", Buffer.from(key, "base64")).update(data, "utf8").digest("base64");
    }
  };
  const GlideStringUtil = { base64Encode: (s) => Buffer.from(s, "utf8").toString("base64") };
  // The instance's clock, at the example's sending time: milliseconds since the epoch.
  const GlideDateTime = class {
    getNumericValue() { return example.sent_at * 1000; }
  };
  const user = example.elements.find((e) => e.name === "sys_updated_by").value;
  const condition = (who) => new Function("gs", "current", `return (${rule.condition});`)(gsFor(who, example, log), glideRecord(example));
  const runs = { person: condition(user), integration_user: condition(INTEGRATION_USER) };
  const run = new Function("current", "previous", "gs", "sn_ws", "GlideCertificateEncryption", "GlideStringUtil", "GlideDateTime", rule.script);
  run(glideRecord(example), null, gsFor(user, example, log), sn_ws, GlideCertificateEncryption, GlideStringUtil, GlideDateTime);
  console.log(JSON.stringify({ name: example.name, condition: runs, sent, log }));
}
