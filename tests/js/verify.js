// tuf-js, an independent TUF client, verifies targets of a served repository.
//
// usage: node verify.js '<spec JSON>'
//   spec: {"metadataBaseUrl": ..., "root": "<path of the trusted 1.root.json>",
//          "workDir": "<empty directory>",
//          "targets": [{"path": ..., "targetBaseUrl": ..., "prefix": true|false}, ...]}
// prints one JSON line: [{"path", "found", "length", "sha256"}, ...]
// exits non-zero when a refresh or a download fails verification.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { Updater } = require('tuf-js');

async function verify(spec, target, index) {
  const metadataDir = path.join(spec.workDir, 'metadata');
  const targetDir = path.join(spec.workDir, `targets-${index}`);
  fs.mkdirSync(targetDir, { recursive: true });
  const updater = new Updater({
    metadataDir,
    metadataBaseUrl: spec.metadataBaseUrl,
    targetDir,
    targetBaseUrl: target.targetBaseUrl,
    config: { prefixTargetsWithHash: target.prefix },
  });
  await updater.refresh();
  const info = await updater.getTargetInfo(target.path);
  if (info === undefined) {
    return { path: target.path, found: false };
  }
  const file = await updater.downloadTarget(info, path.join(targetDir, 'download'));
  const data = fs.readFileSync(file);
  return {
    path: target.path,
    found: true,
    length: data.length,
    sha256: crypto.createHash('sha256').update(data).digest('hex'),
  };
}

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const metadataDir = path.join(spec.workDir, 'metadata');
  fs.mkdirSync(metadataDir, { recursive: true });
  // tuf-js takes its trust anchor as root.json in the metadata directory.
  fs.copyFileSync(spec.root, path.join(metadataDir, 'root.json'));
  const results = [];
  for (const [index, target] of spec.targets.entries()) {
    results.push(await verify(spec, target, index));
  }
  console.log(JSON.stringify(results));
}

main().catch((error) => {
  console.error(`tuf-js: ${error.name}: ${error.message}`);
  process.exit(1);
});
