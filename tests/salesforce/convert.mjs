// Converts an SFDX project to Metadata API form offline with Salesforce's own
// library (@salesforce/source-deploy-retrieve, which the Salesforce CLI uses for
// `sf project convert source` and before every deploy), and prints each
// component it found as "Type<TAB>fullName", then the package.xml it wrote.
//
// Usage: node convert.mjs PROJECT_DIR OUT_DIR
import { readFileSync } from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { ComponentSet, MetadataConverter } = require("@salesforce/source-deploy-retrieve");

const [projectDir, outDir] = process.argv.slice(2);
try {
  const project = JSON.parse(readFileSync(path.join(projectDir, "sfdx-project.json"), "utf8"));
  const dirs = project.packageDirectories.map((d) => path.resolve(projectDir, d.path));
  const components = ComponentSet.fromSource(dirs);
  components.sourceApiVersion = project.sourceApiVersion;
  if (components.size === 0) throw new Error("no metadata components found");
  for (const c of components.getSourceComponents()) {
    await c.parseXml();
    console.log(`${c.type.name}\t${c.fullName}`);
  }
  const result = await new MetadataConverter().convert(components, "metadata", { type: "directory", outputDirectory: path.resolve(outDir), genUniqueDir: false });
  console.log("PACKAGE\t" + path.join(result.packagePath, "package.xml"));
} catch (e) {
  console.error(`FAILED: ${e.name}: ${e.message}`);
  process.exit(1);
}
