#!/bin/sh
# Rebuilds asguest.wasm, a proxy-wasm guest of another SDK
# (AssemblyScript, @solo-io/proxy-runtime 0.1.8, ABI 0.2.0), from index.ts
# and records its sha256 (checked by TestAssemblyScriptGuest).
# Needs node and npm; the npm packages are cached under
# $HOME/.cache/meshwarden/asguest.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work="${HOME}/.cache/meshwarden/asguest"
mkdir -p "$work"
cd "$work"
[ -f package.json ] || echo '{"private":true}' > package.json
npm install --no-audit --no-fund @solo-io/proxy-runtime@0.1.8 assemblyscript@0.14.13 >/dev/null
cp "$here/index.ts" .
npx asc index.ts -b as.wasm --use abort=abort_proc_exit --optimize
cp as.wasm "$here/asguest.wasm"
cd "$here" && sha256sum asguest.wasm > asguest.wasm.sha256
