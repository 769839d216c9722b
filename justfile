# Common tasks. `just --list` shows them.

# The WASI component (wasm32-wasip2) and the Fluent Bit module (wasm32-wasip1).
build:
    cargo build --release --target wasm32-wasip2 -p misp-enrich
    cargo build --release --target wasm32-wasip1 -p misp-enrich
    @echo "component:          target/wasm32-wasip2/release/misp_enrich.wasm"
    @echo "Fluent Bit module:  target/wasm32-wasip1/release/misp_enrich.wasm"

# Every test: native core, component in the wasmtime host.
test:
    cargo test --workspace

# Replay the bundled Cowrie log against the embedded fake MISP.
demo:
    cargo run -p misp-enrich-host -- demo

# Benchmarks (divan and counting tools); figures and method in BENCHMARKS.md.
bench: build
    cargo bench -p misp-enrich
    cargo bench -p misp-enrich-host --bench component
    cargo bench -p misp-enrich-host --bench replay
    cd tools/interp-bench && cargo run --release

# Instructions per record of the Fluent Bit module, interpreted (wasmi) and native (valgrind).
callgrind: build
    #!/usr/bin/env bash
    set -euo pipefail
    (cd tools/interp-bench && cargo build --release)
    for workload in realistic all_private; do
        for mode in interpreted native; do
            flag=$([ "$mode" = native ] && echo --native || true)
            valgrind --tool=callgrind --toggle-collect='interp_bench::replay' \
                --callgrind-out-file=/dev/null \
                tools/interp-bench/target/release/interp-bench --workload "$workload" $flag 2>&1 \
                | awk -v w="$workload" -v m="$mode" \
                    '/refs:/ { gsub(",", "", $4); printf "%s, %s: %.0f instructions per record\n", w, m, $4 / 2000 }'
        done
    done

# The WIT world of the built component: imports and exports.
wit: build
    wasm-tools component wit target/wasm32-wasip2/release/misp_enrich.wasm
