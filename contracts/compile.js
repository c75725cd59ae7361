#!/usr/bin/env node
// Compiles contracts/*.sol with the pinned solc-js and writes contracts/artifacts/<Name>.json.
//
//   node contracts/compile.js          compile and (re)write the artifacts
//   node contracts/compile.js --check  compile and compare with the committed artifacts; exit 1 on any difference
//
// Exit status 1 on a wrong compiler version, any compiler error, or (with --check) a stale artifact.
'use strict';

const fs = require('fs');
const path = require('path');
const solc = require('solc');

const PINNED_VERSION = '0.8.28';
const CONTRACTS = ['PayoutBatcher', 'PayoutClaims', 'TestToken'];
const CONTRACTS_DIR = __dirname;
const ARTIFACTS_DIR = path.join(CONTRACTS_DIR, 'artifacts');

// Recorded in every artifact; bytecodeHash "none" keeps the output independent of paths/metadata.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  metadata: { bytecodeHash: 'none' },
};

function fail(message) {
  console.error(`compile.js: ${message}`);
  process.exit(1);
}

function main() {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length) fail(`unknown argument(s): ${unknown.join(' ')} (usage: compile.js [--check])`);
  const check = args.includes('--check');

  const version = solc.version();
  if (!version.startsWith(PINNED_VERSION + '+')) {
    fail(`solc-js ${version} is installed, but ${PINNED_VERSION} is pinned (run npm ci)`);
  }
  const compiler = `solc-js ${version.replace(/\.Emscripten\.clang$/, '')}`;

  const sources = {};
  for (const name of CONTRACTS) {
    const file = `${name}.sol`;
    sources[file] = { content: fs.readFileSync(path.join(CONTRACTS_DIR, file), 'utf8') };
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));

  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const diagnostic of output.errors || []) {
    console.error(diagnostic.formattedMessage || diagnostic.message);
  }
  if (errors.length) fail(`${errors.length} compiler error(s)`);

  const stale = [];
  for (const name of CONTRACTS) {
    const contract = output.contracts?.[`${name}.sol`]?.[name];
    if (!contract) fail(`no output for ${name}`);
    const artifact = {
      contractName: name,
      compiler,
      settings: SETTINGS,
      abi: contract.abi,
      bytecode: '0x' + contract.evm.bytecode.object,
      deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
    };
    const text = JSON.stringify(artifact, null, 2) + '\n';
    const target = path.join(ARTIFACTS_DIR, `${name}.json`);
    const relative = path.relative(process.cwd(), target);
    if (check) {
      const committed = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : null;
      if (committed === null) stale.push(`${relative} is missing`);
      else if (committed !== text) stale.push(`${relative} differs from a fresh compilation`);
    } else {
      fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
      fs.writeFileSync(target, text);
      console.log(`wrote ${relative} (${(contract.evm.deployedBytecode.object.length / 2)} bytes runtime)`);
    }
  }
  if (stale.length) {
    fail(`artifacts are stale:\n  ${stale.join('\n  ')}\nrun: node contracts/compile.js`);
  }
  if (check) console.log(`artifacts match ${compiler}`);
}

main();
