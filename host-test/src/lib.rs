//! The wasmtime host that runs the misp-enrich component.
