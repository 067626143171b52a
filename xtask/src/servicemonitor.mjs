// Validates Prometheus Operator manifests (ServiceMonitor) against the CRD's
// OpenAPI schema, as compiled by @kubernetes-models/prometheus-operator: types,
// required fields, enums and patterns. Prints one line per document; exits 1 if
// any is invalid or of a kind it has no schema for.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = { "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor };
let failed = false;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length > 0) {
      console.log(`${file}: not YAML: ${doc.errors[0].message}`);
      failed = true;
      continue;
    }
    const manifest = doc.toJS();
    const kind = `${manifest.apiVersion}/${manifest.kind}`;
    const Model = models[kind];
    if (!Model) {
      console.log(`${file}: no schema for ${kind}`);
      failed = true;
      continue;
    }
    try {
      new Model(manifest).validate();
      console.log(`${file}: ${manifest.kind} ${manifest.metadata?.name} passed`);
    } catch (e) {
      console.log(`${file}: ${manifest.kind} ${manifest.metadata?.name} is invalid: ${e.message}`);
      failed = true;
    }
  }
}
process.exit(failed ? 1 : 0);
