// Validates KEDA ScaledObjects against KEDA's own CRD schema, without a cluster.
//
//   NODE_PATH=DIR/node_modules node keda-validate.cjs < scaledobjects.json
//
// The schema is the one the npm package @kubernetes-models/keda compiled from KEDA's
// ScaledObject CustomResourceDefinition (openAPIV3Schema) into an ajv validator. Input:
// a JSON array of ScaledObject documents (deploy/checks/manifests.py writes it). Exit 1
// when any does not validate. Run by scripts/check-deploy.sh.
"use strict";
const fs = require("fs");
const path = require("path");

const pkg = path.dirname(require.resolve("@kubernetes-models/keda/package.json"));
const version = require(path.join(pkg, "package.json")).version;
// The raw schema validator (not the model class, which would fill in apiVersion and kind).
const { validate } = require(path.join(pkg, "_schemas", "KedaShV1alpha1ScaledObject.js"));

const docs = JSON.parse(fs.readFileSync(0, "utf8"));
let failed = 0;
for (const doc of docs) {
  const name = `${doc.kind}/${(doc.metadata || {}).name}`;
  if (validate(doc)) {
    console.log(`ok   ${name} validates against KEDA's ScaledObject schema (@kubernetes-models/keda ${version})`);
  } else {
    failed++;
    console.log(`FAIL ${name} does not validate against KEDA's ScaledObject schema:`);
    for (const e of validate.errors || []) {
      console.log(`     ${e.instancePath || "/"} ${e.keyword}: ${JSON.stringify(e.params)}`);
    }
  }
}
if (docs.length === 0) {
  console.log("FAIL no ScaledObject to validate");
  failed++;
}
process.exit(failed ? 1 : 0);
