// Validates KEDA objects (ScaledObject, TriggerAuthentication) against KEDA's own CRD
// schemas, without a cluster.
//
//   NODE_PATH=DIR/node_modules node keda-validate.cjs [--target scale-target.json] < keda-objects.json
//
// The schemas are the ones the npm package @kubernetes-models/keda compiled from KEDA's
// CustomResourceDefinitions (openAPIV3Schema) into ajv validators. Input: a JSON array of
// KEDA documents (deploy/checks/manifests.py writes it). Exit 1 when any does not
// validate, is of a kind without a schema here, or when there is no ScaledObject.
// With --target (a JSON object: apiVersion, kind, name of the workload the base ships,
// also written by manifests.py), every ScaledObject's scaleTargetRef, read with KEDA's
// defaults (apiVersion apps/v1, kind Deployment), must be that workload: vitalwatch is
// a StatefulSet, and a scaleTargetRef without `kind` would make KEDA look for a
// Deployment that does not exist. The schema accepts either.
// Run by scripts/check-deploy.sh.
"use strict";
const fs = require("fs");
const path = require("path");

const pkg = path.dirname(require.resolve("@kubernetes-models/keda/package.json"));
const meta = require(path.join(pkg, "package.json"));
// The CRDs the package was generated from (a KEDA release URL), for the log line.
const crds = JSON.stringify(meta).match(/releases\/download\/(v[0-9.]+)\//);
const source = `@kubernetes-models/keda ${meta.version}${crds ? `, KEDA ${crds[1]} CRDs` : ""}`;
// The raw schema validators (not the model classes, which would fill in apiVersion and kind).
const kinds = ["ScaledObject", "TriggerAuthentication", "ClusterTriggerAuthentication", "ScaledJob"];
const validators = {};
for (const kind of kinds) {
  validators[kind] = require(path.join(pkg, "_schemas", `KedaShV1alpha1${kind}.js`)).validate;
}

const docs = JSON.parse(fs.readFileSync(0, "utf8"));
const targetAt = process.argv.indexOf("--target");
const target = targetAt > 0 ? JSON.parse(fs.readFileSync(process.argv[targetAt + 1], "utf8")) : null;
let failed = 0;
for (const doc of docs) {
  const name = `${doc.kind}/${(doc.metadata || {}).name}`;
  const validate = validators[doc.kind];
  if (!validate) {
    failed++;
    console.log(`FAIL ${name}: no KEDA schema for kind ${doc.kind} (known: ${kinds.join(", ")})`);
  } else if (validate(doc)) {
    console.log(`ok   ${name} validates against KEDA's ${doc.kind} schema (${source})`);
  } else {
    failed++;
    console.log(`FAIL ${name} does not validate against KEDA's ${doc.kind} schema:`);
    for (const e of validate.errors || []) {
      console.log(`     ${e.instancePath || "/"} ${e.keyword}: ${JSON.stringify(e.params)}`);
    }
  }
}
if (target) {
  const want = `${target.apiVersion} ${target.kind} ${target.name}`;
  for (const doc of docs.filter((d) => d.kind === "ScaledObject")) {
    const ref = (doc.spec || {}).scaleTargetRef || {};
    const got = `${ref.apiVersion || "apps/v1"} ${ref.kind || "Deployment"} ${ref.name}`;
    const name = `ScaledObject/${(doc.metadata || {}).name}`;
    if (got === want) {
      console.log(`ok   ${name} scales the base's workload: ${got}`);
    } else {
      failed++;
      console.log(`FAIL ${name} scales ${got} (KEDA's defaults filled in), not the base's ${want}`);
    }
  }
}
if (!docs.some((d) => d.kind === "ScaledObject")) {
  console.log("FAIL no ScaledObject to validate");
  failed++;
}
process.exit(failed ? 1 : 0);
