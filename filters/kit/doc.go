// Package kit is what the Meshwarden filters share inside the guest: the
// plugin skeleton (VM context, configuration loading, seeded randomness, the
// tick), the request view of the current stream, the batcher that delivers
// encoded records to a collector with dispatch_http_call, and the JSON
// string writer with a fast path for wasm.
//
// It imports the ABI package filters/proxywasm, so only guest code imports
// it. What the control plane and the policy loader need lives in the pure
// packages kit/kitconfig (config errors and checks) and each filter's config
// package (dye/dyeconfig, audit/auditconfig, trace/traceconfig). Test helpers
// shared by the filters' tests are in kit/kittest.
//
// Like the rest of the guest code it avoids fmt and os of its own (issue 19
// wants guests without them): log lines are formatted by proxywasm.
package kit
