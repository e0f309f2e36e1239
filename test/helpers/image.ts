/** What the image holds besides dist/ and the production node_modules, shared by the Dockerfile test and the compiled-build test. */

/**
 * The files and folders vmroll reads at run time, by their path from the project root: the CLI
 * entry, package.json (--version), the JSON Schemas validate.ts and configFile.ts read, and the
 * bundled example repository and KubeVirt CR of `vmroll run --cluster sim`. No TypeScript.
 */
export const IMAGE_FILES = [
  'package.json',
  'bin',
  'schemas/virtualmachine.schema.json',
  'schemas/vmplan.schema.json',
  'schemas/vmroll-config.schema.json',
  'fixtures/example-repo',
  'fixtures/example-cluster',
] as const;
