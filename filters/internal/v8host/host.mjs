// host.mjs — a proxy-wasm test host on Node.js's WebAssembly (V8, Envoy's
// default Wasm engine) that models proxy-wasm-cpp-host, the runtime inside
// Envoy. It reads one story (JSON) on stdin, runs it and writes one result
// (JSON) on stdout. No npm dependencies. See README.md for the input and
// output formats and for the list of cpp-host behaviours this follows.
//
// Sources (read, not copied): proxy-wasm/proxy-wasm-cpp-host src/exports.cc,
// src/wasm.cc, src/context.cc, include/proxy-wasm/{exports,wasm,context}.h,
// and proxy-wasm/spec abi-versions/v0.2.1. Where a behaviour belongs to
// Envoy rather than cpp-host (header maps, buffers, metrics, http calls,
// properties), the host follows Envoy's source/extensions/common/wasm
// Context, and says so next to the code.

import { readFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';

// ---- constants -------------------------------------------------------------

// WasmResult (include/proxy-wasm/wasm_api_impl.h / the spec's proxy_result_t).
const Ok = 0, NotFound = 1, BadArgument = 2, SerializationFailure = 3, ParseFailure = 4,
  InvalidMemoryAccess = 6, Empty = 7, CasMismatch = 8, InternalFailure = 10, Unimplemented = 12;
void SerializationFailure; void ParseFailure; void InternalFailure; void Unimplemented;

// WASI errno values cpp-host returns.
const ESUCCESS = 0, EBADF = 8, EFAULT = 21, EINVAL = 28, ENOSYS = 52, ENOTSUP = 58;

// Buffer and map types (spec v0.2.1).
const BUF_REQ_BODY = 0, BUF_RESP_BODY = 1, BUF_CALL_BODY = 4, BUF_VM_CONFIG = 6, BUF_PLUGIN_CONFIG = 7;
const BUF_MAX = 8;
const MAP_REQ_HEADERS = 0, MAP_REQ_TRAILERS = 1, MAP_RESP_HEADERS = 2, MAP_RESP_TRAILERS = 3,
  MAP_CALL_HEADERS = 6, MAP_CALL_TRAILERS = 7, MAP_MAX = 7;
const LOG_MAX = 5; // critical

// cpp-host's random_get limit (PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES).
const RANDOM_MAX = 64 * 1024;

// Hostcalls allowed while the VM runs _initialize (WasmBase::startVm's
// restricted-callback list). The list in the cpp-host source we could read
// predates PR #533; that PR widens it for Go, whose package initialisers run
// inside _initialize (see README "Assumptions"). We allow every WASI function
// Envoy exports plus proxy_log, and refuse every other proxy_* hostcall.
const ALLOWED_IN_INITIALIZE = new Set(['env.proxy_log']);
// Hostcalls allowed while the VM runs proxy_on_memory_allocate / malloc
// (WasmBase::allocMemory): proxy_log, fd_write and clock_time_get in the
// source we read, plus poll_oneoff and sched_yield, which PR #533 allows
// because Go's allocator may sleep or yield (assumption, see README).
const ALLOWED_IN_MALLOC = new Set(['env.proxy_log', 'fd_write', 'clock_time_get', 'poll_oneoff', 'sched_yield']);

// ---- input -----------------------------------------------------------------

const input = JSON.parse(readFileSync(0, 'utf8'));
const enc = new TextEncoder();
const dec = new TextDecoder();

const out = {
  ok: true,
  failure: '',
  stderrTail: [],
  vms: [],
  requests: [],
  httpCalls: [],
  httpCallCount: {},
  httpCallBytes: {},
  logs: [],
  logCount: 0,
  wasi: { calls: {}, enosys: {}, errors: {}, pollSubscriptions: {} },
  hostcalls: {},
  requestCount: 0,
  tickCount: 0,
  elapsedMs: 0,
};
const maxLogs = input.maxLogs ?? 500;
const recordRequests = input.recordRequests ?? 1000;
const recordCalls = input.recordCalls ?? 1000;
const pollMode = input.pollOneoff ?? 'pr533'; // "pr533" | "enosys"
const logLevel = input.logLevel ?? 2;

class VMFailure extends Error {}

function b64(u8) { return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('base64'); }
function bytesOf(v) {
  if (v == null) return new Uint8Array(0);
  if (typeof v === 'string') return enc.encode(v);
  if (typeof v === 'object' && v.base64 != null) return new Uint8Array(Buffer.from(v.base64, 'base64'));
  if (typeof v === 'object' && v.int != null) { // Envoy encodes integers as 8 bytes LE.
    const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, BigInt(v.int), true); return b;
  }
  return enc.encode(String(v));
}
function concat(a, b) {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const r = new Uint8Array(a.length + b.length); r.set(a); r.set(b, a.length); return r;
}
function count(obj, k) { obj[k] = (obj[k] ?? 0) + 1; }

// ---- process-wide state (Envoy: per-process shared data and queues) --------

const sharedData = new Map(); // key -> {value, cas}
let nextCas = 1;
const queues = new Map(); // token -> {vmId, name, vm, rootId, items: []}
const queueByName = new Map(); // vmId + "\0" + name -> token
let nextQueueToken = 1;

// ---- the VM ----------------------------------------------------------------

class VM {
  constructor(spec) {
    this.spec = spec;
    this.name = spec.name;
    this.vmId = spec.vmId ?? '';
    this.rootIdName = spec.rootId ?? '';
    this.props = spec.properties ?? {};
    this.nextContextId = 1;
    this.contexts = new Map(); // id -> {id, root, stream, filterIndex}
    this.current = null; // context of the callback under way
    this.effective = 0; // proxy_set_effective_context
    this.depth = 0;
    this.afterCall = [];
    this.restricted = null; // null or {what, allowed:Set}
    this.stopNext = false; // send_local_response: stopNextIteration
    this.tickMs = 0;
    this.failed = '';
    this.tempPluginConfig = null; // during proxy_on_configure
    this.callResponse = null; // during proxy_on_http_call_response
    this.metrics = new Map(); // id -> {name, type, value}
    this.metricByName = new Map();
    this.nextMetric = [1, 1, 1];
    this.nextHttpToken = 1;
    this.stderr = '';
    this.stderrLines = [];
    this.gcCycles = 0; // gctrace lines (GODEBUG=gctrace=1)
    this.fatalAt = null; // the lines before a fatal error
    this.fatalLines = []; // a fatal error's first lines
    this.allocated = 0;
    this.allocations = 0;
  }

  // view returns a fresh DataView / Uint8Array of linear memory: memory may
  // have grown in any call into the guest, which detaches the old buffer.
  u8() { return new Uint8Array(this.memory.buffer); }
  dv() { return new DataView(this.memory.buffer); }

  getMemory(ptr, size) {
    ptr >>>= 0; size >>>= 0;
    const buf = this.memory.buffer;
    if (ptr + size > buf.byteLength) return null;
    return new Uint8Array(buf, ptr, size);
  }
  setWord(ptr, v) {
    ptr >>>= 0;
    if (ptr + 4 > this.memory.buffer.byteLength) return false;
    this.dv().setUint32(ptr, v >>> 0, true);
    return true;
  }
  setU64(ptr, v) {
    ptr >>>= 0;
    if (ptr + 8 > this.memory.buffer.byteLength) return false;
    this.dv().setBigUint64(ptr, BigInt.asUintN(64, BigInt(v)), true);
    return true;
  }
  setMemory(ptr, bytes) {
    ptr >>>= 0;
    if (ptr + bytes.length > this.memory.buffer.byteLength) return false;
    this.u8().set(bytes, ptr);
    return true;
  }

  // allocMemory is WasmBase::allocMemory: proxy_on_memory_allocate (or
  // malloc) under the malloc restricted-callback list.
  allocMemory(size) {
    const prev = this.restricted;
    this.restricted = { what: 'malloc', allowed: ALLOWED_IN_MALLOC };
    let p;
    try {
      p = this.call(this.malloc, 'proxy_on_memory_allocate', size) >>> 0;
    } finally {
      this.restricted = prev;
    }
    this.allocations++;
    this.allocated += size;
    if (p === 0 || p + size > this.memory.buffer.byteLength) return 0;
    return p;
  }

  // copyToPointerSize is WasmBase::copyToPointerSize: an empty value writes
  // pointer 0 and size 0 without allocating.
  copyToPointerSize(bytes, ptrPtr, sizePtr) {
    let p = 0;
    if (bytes.length > 0) {
      p = this.allocMemory(bytes.length);
      if (p === 0) return false;
      this.u8().set(bytes, p);
    }
    if (!this.setWord(ptrPtr, p)) return false;
    if (!this.setWord(sizePtr, bytes.length)) return false;
    return true;
  }

  context() {
    // ContextOrEffectiveContext: the effective context when one is set and
    // still exists, else the context of the callback under way.
    if (this.effective !== 0) {
      const c = this.contexts.get(this.effective);
      if (c) return c;
    }
    return this.current;
  }

  fail(msg) {
    if (!this.failed) this.failed = msg;
    throw new VMFailure(msg);
  }

  // call runs one export. A trap, a proc_exit or a restricted hostcall kills
  // the VM (FailState::RuntimeError): the story fails with the guest's last
  // stderr lines.
  call(fn, name, ...args) {
    if (this.failed) throw new VMFailure(this.failed);
    this.depth++;
    try {
      return fn(...args);
    } catch (e) {
      if (e instanceof VMFailure) throw e;
      this.fail(`Function: ${name} failed: ${e && e.message ? e.message : String(e)}`);
    } finally {
      this.depth--;
      if (this.depth === 0) {
        this.effective = 0;
        // addAfterVmCallAction: queued work runs once the outermost call
        // into the VM has returned.
        while (this.afterCall.length > 0 && !this.failed) this.afterCall.shift()();
      }
    }
  }

  // callIn runs export name for context ctx (the context of the callback).
  callIn(ctx, name, ...args) {
    const fn = this.exports[name];
    if (!fn) return undefined;
    const prev = this.current;
    this.current = ctx;
    try {
      return this.call(fn, name, ...args);
    } finally {
      this.current = prev;
    }
  }

  newContext(root, stream, filterIndex) {
    // WasmBase::allocContextId: ids start at 1 and are never reused.
    const id = this.nextContextId++;
    const c = { id, root, stream, filterIndex };
    this.contexts.set(id, c);
    return c;
  }

  log(level, msg) {
    out.logCount++;
    if (out.logs.length < maxLogs) out.logs.push({ vm: this.name, level, msg });
  }
}

// ---- imports: env (proxy-wasm ABI) ----------------------------------------

function envImports(vm) {
  const H = {};
  const mem = (p, n) => vm.getMemory(p, n);
  const str = (p, n) => { const m = mem(p, n); return m == null ? null : dec.decode(m); };

  // -- general
  H.proxy_log = (level, p, n) => {
    if (level >>> 0 > LOG_MAX) return BadArgument;
    const m = str(p, n);
    if (m == null) return InvalidMemoryAccess;
    vm.log(level, m);
    return Ok;
  };
  H.proxy_get_log_level = (retPtr) => (vm.setWord(retPtr, logLevel) ? Ok : InvalidMemoryAccess);
  H.proxy_get_current_time_nanoseconds = (retPtr) => (vm.setU64(retPtr, nowNs()) ? Ok : InvalidMemoryAccess);
  H.proxy_set_tick_period_milliseconds = (ms) => { vm.tickMs = ms >>> 0; return Ok; };
  H.proxy_set_effective_context = (id) => {
    if (!vm.contexts.has(id >>> 0)) return BadArgument;
    vm.effective = id >>> 0;
    return Ok;
  };
  H.proxy_done = () => NotFound; // WasmBase::done: no plugin is pending done in these stories.
  H.proxy_call_foreign_function = (np, nn, ap, an) => {
    if (mem(np, nn) == null || mem(ap, an) == null) return InvalidMemoryAccess;
    return NotFound; // no foreign functions registered
  };
  H.proxy_get_configuration = (pp, sp) => // ABI 0.1.0
    (vm.copyToPointerSize(vm.tempPluginConfig ?? new Uint8Array(0), pp, sp) ? Ok : InvalidMemoryAccess);
  H.proxy_get_status = (codePtr, pp, sp) => {
    if (!vm.setWord(codePtr, 0)) return InvalidMemoryAccess;
    return vm.copyToPointerSize(new Uint8Array(0), pp, sp) ? Ok : InvalidMemoryAccess;
  };

  // -- properties (Envoy's Context::getProperty; paths are NUL-separated)
  H.proxy_get_property = (pp, pn, rp, rn) => {
    const path = mem(pp, pn);
    if (path == null) return InvalidMemoryAccess;
    const v = lookupProperty(vm, dec.decode(path).split('\0').join('.'));
    if (v === undefined) return NotFound;
    return vm.copyToPointerSize(v, rp, rn) ? Ok : InvalidMemoryAccess;
  };
  H.proxy_set_property = (pp, pn, vp, vn) => {
    const k = mem(pp, pn), v = mem(vp, vn);
    if (k == null || v == null) return InvalidMemoryAccess;
    const c = vm.context();
    const props = c && c.stream ? c.stream.setProps : vm.setProps ??= new Map();
    props.set(dec.decode(k).split('\0').join('.'), v.slice());
    return Ok;
  };

  // -- stream control
  H.proxy_continue_stream = (t) => {
    if (t >>> 0 > 2) return BadArgument;
    const c = vm.context();
    if (c && c.stream) c.stream.continued[t === 0 ? 'request' : 'response'].add(c.filterIndex);
    return Ok;
  };
  H.proxy_continue_request = () => H.proxy_continue_stream(0);
  H.proxy_continue_response = () => H.proxy_continue_stream(1);
  H.proxy_close_stream = (t) => (t >>> 0 > 2 ? BadArgument : Ok);
  H.proxy_clear_route_cache = () => Ok;
  H.proxy_send_local_response = (code, dp, dn, bp, bn, hp, hn, grpc) => {
    const details = mem(dp, dn), body = mem(bp, bn), hdrs = mem(hp, hn);
    if (details == null || body == null || hdrs == null) return InvalidMemoryAccess;
    const c = vm.context();
    if (c && c.stream && !c.stream.localReply) {
      c.stream.localReply = {
        status: code >>> 0, details: dec.decode(details), body: b64(body.slice()),
        headers: toPairs(hdrs), grpcStatus: grpc | 0, filter: vm.name,
      };
    }
    vm.stopNext = true; // wasm()->stopNextIteration(true)
    return Ok;
  };

  // -- header maps (exports.cc checks the type; the map semantics are Envoy's)
  const mapOf = (t) => {
    const c = vm.context();
    switch (t) {
      case MAP_REQ_HEADERS: return c && c.stream ? c.stream.reqHeaders : null;
      case MAP_RESP_HEADERS: return c && c.stream ? c.stream.respHeaders : null;
      case MAP_REQ_TRAILERS: return c && c.stream ? c.stream.reqTrailers : null;
      case MAP_RESP_TRAILERS: return c && c.stream ? c.stream.respTrailers : null;
      case MAP_CALL_HEADERS: return vm.callResponse ? vm.callResponse.headers : null;
      case MAP_CALL_TRAILERS: return vm.callResponse ? vm.callResponse.trailers : null;
      default: return null;
    }
  };
  // Envoy answers a map that does not exist (yet) with BadArgument, and
  // with NotFound in the access-log phase (proxy_on_log).
  const noMap = () => { const c = vm.context(); return c && c.stream && c.stream.logPhase ? NotFound : BadArgument; };
  H.proxy_get_header_map_value = (t, kp, kn, rp, rn) => {
    if (t >>> 0 > MAP_MAX) return BadArgument;
    const k = str(kp, kn);
    if (k == null) return InvalidMemoryAccess;
    const m = mapOf(t);
    if (!m) return noMap();
    const key = k.toLowerCase();
    const e = m.find((p) => p[0] === key);
    if (!e) return NotFound;
    return vm.copyToPointerSize(enc.encode(e[1]), rp, rn) ? Ok : InvalidMemoryAccess;
  };
  H.proxy_get_header_map_pairs = (t, rp, rn) => {
    if (t >>> 0 > MAP_MAX) return BadArgument;
    const m = mapOf(t);
    if (!m) return noMap();
    return vm.copyToPointerSize(m.length === 0 ? new Uint8Array(0) : marshalPairs(m), rp, rn) ? Ok : InvalidMemoryAccess;
  };
  H.proxy_set_header_map_pairs = (t, p, n) => {
    if (t >>> 0 > MAP_MAX) return BadArgument;
    const data = mem(p, n);
    if (data == null) return InvalidMemoryAccess;
    const m = mapOf(t);
    if (!m) return noMap();
    const pairs = toPairs(data);
    m.length = 0;
    for (const [k, v] of pairs) m.push([k.toLowerCase(), v]);
    return Ok;
  };
  H.proxy_add_header_map_value = (t, kp, kn, vp, vn) => {
    if (t >>> 0 > MAP_MAX) return BadArgument;
    const k = str(kp, kn), v = str(vp, vn);
    if (k == null || v == null) return InvalidMemoryAccess;
    const m = mapOf(t);
    if (!m) return noMap();
    m.push([k.toLowerCase(), v]);
    return Ok;
  };
  H.proxy_replace_header_map_value = (t, kp, kn, vp, vn) => {
    if (t >>> 0 > MAP_MAX) return BadArgument;
    const k = str(kp, kn), v = str(vp, vn);
    if (k == null || v == null) return InvalidMemoryAccess;
    const m = mapOf(t);
    if (!m) return noMap();
    const key = k.toLowerCase();
    const i = m.findIndex((p) => p[0] === key);
    if (i < 0) { m.push([key, v]); return Ok; }
    m[i] = [key, v];
    for (let j = m.length - 1; j > i; j--) if (m[j][0] === key) m.splice(j, 1);
    return Ok;
  };
  H.proxy_remove_header_map_value = (t, kp, kn) => {
    if (t >>> 0 > MAP_MAX) return BadArgument;
    const k = str(kp, kn);
    if (k == null) return InvalidMemoryAccess;
    const m = mapOf(t);
    if (!m) return noMap();
    const key = k.toLowerCase();
    for (let j = m.length - 1; j >= 0; j--) if (m[j][0] === key) m.splice(j, 1);
    return Ok;
  };
  H.proxy_get_header_map_size = (t, rp) => {
    if (t >>> 0 > MAP_MAX) return BadArgument;
    const m = mapOf(t);
    if (!m) return noMap();
    // Envoy answers the map's byte size (HeaderMap::byteSize).
    let n = 0;
    for (const [k, v] of m) n += enc.encode(k).length + enc.encode(v).length;
    return vm.setWord(rp, n) ? Ok : InvalidMemoryAccess;
  };

  // -- buffers
  const bufferOf = (t) => {
    const c = vm.context();
    switch (t) {
      case BUF_REQ_BODY: return c && c.stream ? c.stream.reqBody : null;
      case BUF_RESP_BODY: return c && c.stream ? c.stream.respBody : null;
      case BUF_CALL_BODY: return vm.callResponse ? vm.callResponse.body : null;
      case BUF_VM_CONFIG: return { data: bytesOf(vm.spec.vmConfig), readonly: true };
      case BUF_PLUGIN_CONFIG: return vm.tempPluginConfig ? { data: vm.tempPluginConfig, readonly: true } : null;
      default: return null;
    }
  };
  H.proxy_get_buffer_bytes = (t, start, length, rp, rn) => {
    if (t >>> 0 > BUF_MAX) return BadArgument;
    const b = bufferOf(t >>> 0);
    if (!b) return NotFound;
    start >>>= 0; length >>>= 0;
    const size = b.data.length;
    if (start >= size) return Ok; // nothing to copy: Ok, nothing written
    if (start + length > size) length = size - start;
    // An empty buffer (or range) answers Ok WITHOUT writing the pointer and
    // size: exports.cc get_buffer_bytes copies only when length > 0.
    if (length > 0) return vm.copyToPointerSize(b.data.subarray(start, start + length), rp, rn) ? Ok : InvalidMemoryAccess;
    return Ok;
  };
  H.proxy_get_buffer_status = (t, lp, fp) => {
    if (t >>> 0 > BUF_MAX) return BadArgument;
    const b = bufferOf(t >>> 0);
    if (!b) return NotFound;
    if (!vm.setWord(lp, b.data.length)) return InvalidMemoryAccess;
    return vm.setWord(fp, 0) ? Ok : InvalidMemoryAccess;
  };
  H.proxy_set_buffer_bytes = (t, start, length, dp, dn) => {
    if (t >>> 0 > BUF_MAX) return BadArgument;
    const b = bufferOf(t >>> 0);
    if (!b) return NotFound;
    const data = mem(dp, dn);
    if (data == null) return InvalidMemoryAccess;
    if (b.readonly) return BadArgument;
    // Envoy's Buffer::copyFrom: start 0 drains `length` and prepends; a
    // start at or past the end appends; anything else is BadArgument.
    start >>>= 0; length >>>= 0;
    if (start === 0) {
      b.data = concat(data.slice(), b.data.subarray(Math.min(length, b.data.length)));
      return Ok;
    }
    if (start >= b.data.length) { b.data = concat(b.data, data.slice()); return Ok; }
    return BadArgument;
  };

  // -- http calls (Envoy's Context::httpCall; the token belongs to the root
  // context, which gets proxy_on_http_call_response)
  H.proxy_http_call = (up, un, hp, hn, bp, bn, tp, tn, timeout, tokenPtr) => {
    const c = vm.context();
    const uri = str(up, un), hdrs = mem(hp, hn), body = mem(bp, bn), trl = mem(tp, tn);
    if (uri == null || hdrs == null || body == null || trl == null) return InvalidMemoryAccess;
    if (!vm.setWord(tokenPtr, 0)) return InvalidMemoryAccess;
    const headers = toPairs(hdrs);
    const cluster = (input.clusters ?? {})[uri];
    if (!cluster) return BadArgument; // unknown cluster
    const h = (n) => headers.find((p) => p[0] === n);
    if (!h(':path') || !h(':method') || !h(':authority')) return BadArgument;
    const token = vm.nextHttpToken++;
    vm.setWord(tokenPtr, token);
    count(out.httpCallCount, uri);
    out.httpCallBytes[uri] = (out.httpCallBytes[uri] ?? 0) + body.length;
    const rec = { vm: vm.name, cluster: uri, headers, timeoutMs: timeout >>> 0, bodySize: body.length };
    if (out.httpCalls.length < recordCalls) { rec.body = b64(body.slice()); out.httpCalls.push(rec); }
    pending.push({ vm, token, cluster, timeoutMs: timeout >>> 0, rec, fromContext: c ? c.id : 0 });
    return Ok;
  };
  for (const g of ['proxy_grpc_call', 'proxy_grpc_stream']) H[g] = () => BadArgument; // no gRPC clusters
  for (const g of ['proxy_grpc_cancel', 'proxy_grpc_close', 'proxy_grpc_send']) H[g] = () => NotFound;

  // -- shared data and queues (cpp-host SharedData / SharedQueue)
  H.proxy_get_shared_data = (kp, kn, rp, rn, casPtr) => {
    const k = str(kp, kn);
    if (k == null) return InvalidMemoryAccess;
    const e = sharedData.get(vm.vmId + '\0' + k);
    if (!e) return NotFound;
    if (!vm.copyToPointerSize(e.value, rp, rn)) return InvalidMemoryAccess;
    return vm.setWord(casPtr, e.cas) ? Ok : InvalidMemoryAccess;
  };
  H.proxy_set_shared_data = (kp, kn, vp, vn, cas) => {
    const k = str(kp, kn), v = mem(vp, vn);
    if (k == null || v == null) return InvalidMemoryAccess;
    const key = vm.vmId + '\0' + k;
    const e = sharedData.get(key);
    if (cas !== 0 && e && e.cas !== cas >>> 0) return CasMismatch;
    sharedData.set(key, { value: v.slice(), cas: nextCas++ });
    return Ok;
  };
  H.proxy_register_shared_queue = (np, nn, tokenPtr) => {
    const name = str(np, nn);
    if (name == null) return InvalidMemoryAccess;
    const c = vm.context();
    const key = vm.vmId + '\0' + name;
    let token = queueByName.get(key);
    if (token === undefined) {
      token = nextQueueToken++;
      queueByName.set(key, token);
      queues.set(token, { vm, rootId: 0, items: [] });
    }
    const q = queues.get(token);
    q.vm = vm; q.rootId = c ? (c.root ? c.id : 0) : 0;
    return vm.setWord(tokenPtr, token) ? Ok : InvalidMemoryAccess;
  };
  H.proxy_resolve_shared_queue = (vp, vn, np, nn, tokenPtr) => {
    const vmId = str(vp, vn), name = str(np, nn);
    if (vmId == null || name == null) return InvalidMemoryAccess;
    const token = queueByName.get(vmId + '\0' + name);
    if (token === undefined) return NotFound;
    return vm.setWord(tokenPtr, token) ? Ok : InvalidMemoryAccess;
  };
  H.proxy_enqueue_shared_queue = (token, dp, dn) => {
    const d = mem(dp, dn);
    if (d == null) return InvalidMemoryAccess;
    const q = queues.get(token >>> 0);
    if (!q) return NotFound;
    q.items.push(d.slice());
    // The owner's root context hears of it after the current VM call.
    const owner = q.vm, rootId = q.rootId;
    if (rootId !== 0) {
      vm.afterCall.push(() => {
        const rc = owner.contexts.get(rootId);
        if (rc) owner.callIn(rc, 'proxy_on_queue_ready', rootId, token >>> 0);
      });
    }
    return Ok;
  };
  H.proxy_dequeue_shared_queue = (token, rp, rn) => {
    const q = queues.get(token >>> 0);
    if (!q) return NotFound;
    if (q.items.length === 0) return Empty;
    return vm.copyToPointerSize(q.items.shift(), rp, rn) ? Ok : InvalidMemoryAccess;
  };

  // -- metrics (Envoy: counter 0, gauge 1, histogram 2; the type lives in
  // the id's low two bits)
  H.proxy_define_metric = (type, np, nn, idPtr) => {
    type >>>= 0;
    if (type > 2) return BadArgument;
    const name = str(np, nn);
    if (name == null) return InvalidMemoryAccess;
    let id = vm.metricByName.get(type + '\0' + name);
    if (id === undefined) {
      id = (vm.nextMetric[type]++ << 2) | type;
      vm.metricByName.set(type + '\0' + name, id);
      vm.metrics.set(id, { name, type, value: 0n });
    }
    return vm.setWord(idPtr, id) ? Ok : InvalidMemoryAccess;
  };
  H.proxy_increment_metric = (id, delta) => {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return NotFound;
    if (m.type === 0) { if (delta < 0n) return BadArgument; m.value += delta; return Ok; }
    if (m.type === 1) { m.value += delta; return Ok; }
    return BadArgument;
  };
  H.proxy_record_metric = (id, value) => {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return NotFound;
    if (m.type === 0) m.value += value; else m.value = value;
    return Ok;
  };
  H.proxy_get_metric = (id, rp) => {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return NotFound;
    if (m.type === 2) return BadArgument;
    return vm.setU64(rp, m.value) ? Ok : InvalidMemoryAccess;
  };

  const env = {};
  for (const [k, f] of Object.entries(H)) {
    env[k] = (...a) => {
      count(out.hostcalls, k);
      if (vm.restricted && !vm.restricted.allowed.has('env.' + k)) {
        vm.fail(`Function: ${vm.restricted.what} failed: restricted callback env.${k}`);
      }
      return f(...a);
    };
  }
  return env;
}

// ---- imports: WASI (exactly Envoy's surface) --------------------------------

function wasiImports(vm) {
  const W = {};
  const errno = (name, e) => {
    if (e === ENOSYS) count(out.wasi.enosys, name);
    else if (e !== ESUCCESS) count(out.wasi.errors, name + ':' + e);
    return e;
  };
  // fd_write: fd 1 and 2 go to the host log (info, error); others EBADF.
  W.fd_write = (fd, iovs, n, nwrittenPtr) => {
    if (fd !== 1 && fd !== 2) return EBADF;
    let s = new Uint8Array(0);
    for (let i = 0; i < n >>> 0; i++) {
      const iov = vm.getMemory(iovs + i * 8, 8);
      if (iov == null) return EFAULT;
      const d = new DataView(iov.buffer, iov.byteOffset, 8);
      const p = d.getUint32(0, true), l = d.getUint32(4, true);
      if (l) {
        const m = vm.getMemory(p, l);
        if (m == null) return EFAULT;
        s = concat(s, m.slice());
      }
    }
    const written = s.length;
    if (written) {
      let text = dec.decode(s);
      if (fd === 2) {
        vm.stderr += text;
        const lines = vm.stderr.split('\n');
        vm.stderr = lines.pop();
        for (const l of lines) {
          // Keep the first lines of a Go fatal error or panic, and the tail.
          if (/^gc \d+ @/.test(l)) { vm.gcCycles++; continue; }
          if (vm.fatalLines.length === 0 && /^(fatal error:|panic:)/.test(l)) vm.fatalAt = vm.stderrLines.slice(-3);
          if (vm.fatalAt && vm.fatalLines.length < 12) vm.fatalLines.push(l);
          vm.stderrLines.push(l);
          if (vm.stderrLines.length > 40) vm.stderrLines.shift();
        }
      }
      if (text.endsWith('\n')) text = text.slice(0, -1);
      vm.log(fd === 1 ? 2 : 4, text);
    }
    if (!vm.setWord(nwrittenPtr, written)) return EFAULT;
    return ESUCCESS;
  };
  W.fd_read = () => ENOSYS; // reading files is not supported
  W.fd_seek = () => { vm.log(4, 'wasi_unstable fd_seek'); return ESUCCESS; };
  W.fd_close = () => { vm.log(4, 'wasi_unstable fd_close'); return ESUCCESS; };
  W.fd_fdstat_get = (fd, statPtr) => {
    if (fd !== 1 && fd !== 2) return EBADF;
    // 24 bytes: filetype 0, flags 0, rights_base FD_WRITE (64), inheriting 0.
    const st = new Uint8Array(24);
    new DataView(st.buffer).setBigUint64(8, 64n, true);
    vm.setMemory(statPtr, st);
    return ESUCCESS;
  };
  W.fd_fdstat_set_flags = () => ENOSYS;
  W.fd_prestat_get = () => EBADF; // no preopened directories
  W.fd_prestat_dir_name = () => ENOSYS;
  // environ: input.environ, as Envoy's vm_config.environment_variables
  // (none by default): environ_sizes_get gives the count and the bytes of
  // the NUL-terminated strings, environ_get writes the pointers and strings.
  const env = (input.environ ?? []).map((e) => concat(enc.encode(e), new Uint8Array([0])));
  W.environ_get = (ptrs, buf) => {
    let p = buf >>> 0;
    for (let i = 0; i < env.length; i++) {
      if (!vm.setWord(ptrs + 4 * i, p) || !vm.setMemory(p, env[i])) return EFAULT;
      p += env[i].length;
    }
    return ESUCCESS;
  };
  W.environ_sizes_get = (cp, sp) =>
    (vm.setWord(cp, env.length) && vm.setWord(sp, env.reduce((n, e) => n + e.length, 0)) ? ESUCCESS : EFAULT);
  W.args_get = () => ESUCCESS;
  W.args_sizes_get = (cp, sp) => (vm.setWord(cp, 0) && vm.setWord(sp, 0) ? ESUCCESS : EFAULT);
  W.clock_time_get = (id, _precision, rp) => {
    let t;
    if (id === 0) t = nowNs(); // realtime: getCurrentTimeNanoseconds
    else if (id === 1) t = process.hrtime.bigint(); // monotonic: getMonotonicTimeNanoseconds
    else return ENOTSUP; // process/thread CPU clocks
    return vm.setU64(rp, t) ? ESUCCESS : EFAULT;
  };
  W.random_get = (p, n) => {
    if (n >>> 0 > RANDOM_MAX) return EINVAL;
    const b = new Uint8Array(n >>> 0);
    randomFillSync(b);
    return vm.setMemory(p, b) ? ESUCCESS : EFAULT;
  };
  W.sched_yield = () => ESUCCESS;
  W.proc_exit = (code) => {
    vm.log(4, 'wasi_unstable proc_exit');
    vm.fail(`proc_exit(${code}) called`);
  };
  // poll_oneoff at PR #533: all-clock subscriptions succeed at once (one
  // event per subscription, no sleeping); any fd_read/fd_write subscription
  // makes the whole call ENOSYS. pollOneoff "enosys" models the hosts
  // before it that answer every call with ENOSYS.
  W.poll_oneoff = (inPtr, outPtr, nsubs, neventsPtr) => {
    nsubs >>>= 0;
    if (pollMode === 'enosys') { count(out.wasi.pollSubscriptions, 'any (enosys mode)'); return ENOSYS; }
    const subs = vm.getMemory(inPtr, nsubs * 48);
    if (subs == null || vm.getMemory(outPtr, nsubs * 32) == null) return EFAULT;
    const sd = new DataView(subs.buffer, subs.byteOffset, subs.byteLength);
    const evs = [];
    for (let i = 0; i < nsubs; i++) {
      const userdata = sd.getBigUint64(i * 48, true);
      const tag = sd.getUint8(i * 48 + 8);
      if (tag !== 0) { count(out.wasi.pollSubscriptions, 'with-fd'); return ENOSYS; } // fd_read (1) / fd_write (2)
      evs.push(userdata);
    }
    count(out.wasi.pollSubscriptions, 'clock-only');
    const ev = new Uint8Array(nsubs * 32);
    const ed = new DataView(ev.buffer);
    evs.forEach((u, i) => { ed.setBigUint64(i * 32, u, true); ed.setUint16(i * 32 + 8, 0, true); ed.setUint8(i * 32 + 10, 0); });
    vm.setMemory(outPtr, ev);
    return vm.setWord(neventsPtr, nsubs) ? ESUCCESS : EFAULT;
  };

  const wrapped = {};
  for (const [k, f] of Object.entries(W)) {
    wrapped[k] = (...a) => {
      count(out.wasi.calls, k);
      if (vm.restricted && !vm.restricted.allowed.has(k) && vm.restricted.what === 'malloc') {
        vm.fail(`Function: malloc failed: restricted callback wasi_snapshot_preview1.${k}`);
      }
      return errno(k, f(...a));
    };
  }
  return wrapped;
}

function nowNs() { return BigInt(Date.now()) * 1000000n + (process.hrtime.bigint() % 1000000n); }

// ---- pairs (exports.cc marshalPairs / toPairs) --------------------------------

function marshalPairs(pairs) {
  const ks = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4;
  for (const [k, v] of ks) size += 8 + k.length + 1 + v.length + 1;
  const b = new Uint8Array(size);
  const d = new DataView(b.buffer);
  d.setUint32(0, ks.length, true);
  let o = 4;
  for (const [k, v] of ks) { d.setUint32(o, k.length, true); d.setUint32(o + 4, v.length, true); o += 8; }
  for (const [k, v] of ks) { b.set(k, o); o += k.length + 1; b.set(v, o); o += v.length + 1; }
  return b;
}

// toPairs: a buffer too short for its count yields no pairs (as cpp-host).
function toPairs(u8) {
  if (u8.length < 4) return [];
  const d = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const n = d.getUint32(0, true);
  if (4 + n * 8 > u8.length) return [];
  const lens = [];
  for (let i = 0; i < n; i++) lens.push([d.getUint32(4 + i * 8, true), d.getUint32(8 + i * 8, true)]);
  let o = 4 + n * 8;
  const r = [];
  for (const [kl, vl] of lens) {
    const k = dec.decode(u8.subarray(o, o + kl)); o += kl + 1;
    const v = dec.decode(u8.subarray(o, o + vl)); o += vl + 1;
    r.push([k, v]);
  }
  return r;
}

// ---- properties ---------------------------------------------------------------

function lookupProperty(vm, path) {
  const c = vm.context();
  const s = c && c.stream;
  if (s) {
    if (s.setProps.has(path)) return s.setProps.get(path);
    if (s.props[path] !== undefined) return bytesOf(s.props[path]);
  }
  if (vm.setProps && vm.setProps.has(path)) return vm.setProps.get(path);
  if (vm.props[path] !== undefined) return bytesOf(vm.props[path]);
  if ((input.properties ?? {})[path] !== undefined) return bytesOf(input.properties[path]);
  switch (path) {
    case 'plugin_name': return enc.encode(vm.name);
    case 'plugin_root_id': return enc.encode(vm.rootIdName);
    case 'plugin_vm_id': return enc.encode(vm.vmId);
  }
  return undefined;
}

// ---- VM start (WasmBase::load / initialize / startVm, ContextBase::onStart / onConfigure)

const pending = []; // http calls awaiting an answer: {vm, token, cluster, timeoutMs, rec}

function startVM(spec) {
  const vm = new VM(spec);
  out.vms.push({ name: vm.name, started: false, configured: false, failed: '' });
  const code = readFileSync(spec.wasm);
  const mod = new WebAssembly.Module(code);
  const exportNames = WebAssembly.Module.exports(mod).map((e) => e.name);
  // AbiVersion: a module without proxy_abi_version_* fails to load.
  const abi = exportNames.find((n) => n.startsWith('proxy_abi_version_'));
  if (!abi) vm.fail('Missing or unknown Proxy-Wasm ABI version');
  vm.abi = abi;
  const env = envImports(vm);
  const wasi = wasiImports(vm);
  // Link: every import must be one Envoy exports, or the module fails to
  // load ("Failed to load Wasm module due to a missing import").
  for (const imp of WebAssembly.Module.imports(mod)) {
    const ok = imp.kind === 'function' && (
      (imp.module === 'env' && env[imp.name]) ||
      ((imp.module === 'wasi_snapshot_preview1' || imp.module === 'wasi_unstable') && wasi[imp.name]));
    if (!ok) vm.fail(`Failed to load Wasm module due to a missing import: ${imp.module}.${imp.name}`);
  }
  const inst = new WebAssembly.Instance(mod, { env, wasi_snapshot_preview1: wasi, wasi_unstable: wasi });
  vm.exports = inst.exports;
  vm.memory = inst.exports.memory;
  if (!vm.memory) vm.fail('Wasm module has no memory export');
  vm.malloc = inst.exports.proxy_on_memory_allocate ?? inst.exports.malloc;
  if (!vm.malloc) vm.fail('Wasm module exports neither proxy_on_memory_allocate nor malloc');

  // startVm: _initialize (reactor; then main if exported) or _start, with
  // only the start-up hostcalls allowed.
  vm.restricted = { what: '_initialize', allowed: ALLOWED_IN_INITIALIZE };
  try {
    if (inst.exports._initialize) {
      vm.callIn(null, '_initialize');
      if (inst.exports.main) vm.callIn(null, 'main', 0, 0);
    } else if (inst.exports._start) {
      vm.callIn(null, '_start');
    }
  } finally {
    vm.restricted = null;
  }

  // The root context: proxy_on_context_create(root, 0),
  // proxy_on_vm_start(root, vm_config_size), proxy_on_configure(root,
  // plugin_config_size).
  const root = vm.newContext(true, null, -1);
  vm.root = root;
  vm.callIn(root, 'proxy_on_context_create', root.id, 0);
  const vmConfig = bytesOf(spec.vmConfig);
  const started = vm.callIn(root, 'proxy_on_vm_start', root.id, vmConfig.length);
  const rec = out.vms[out.vms.length - 1];
  rec.started = started === undefined || started !== 0;
  if (!rec.started) return vm;
  vm.tempPluginConfig = bytesOf(spec.pluginConfig);
  try {
    const configured = vm.callIn(root, 'proxy_on_configure', root.id, vm.tempPluginConfig.length);
    rec.configured = configured === undefined || configured !== 0;
  } finally {
    vm.tempPluginConfig = null;
  }
  return vm;
}

// ---- event loop: http call answers, ticks -------------------------------------

function deliverOne() {
  const p = pending.shift();
  if (!p) return false;
  const { vm, token, cluster, timeoutMs, rec } = p;
  const root = vm.root;
  const delay = cluster.delayMs ?? 0;
  let n = 0, body = 0, trailers = 0;
  if (cluster.fail || (timeoutMs > 0 && delay >= timeoutMs)) {
    // onHttpCallFailure (timeout, reset): no response, zero headers.
    vm.callResponse = null;
    rec.outcome = cluster.fail ? 'reset' : 'timeout';
  } else {
    const headers = [[':status', String(cluster.status ?? 200)], ...(cluster.headers ?? [])];
    const b = bytesOf(cluster.body);
    vm.callResponse = { headers, trailers: [], body: { data: b, readonly: false } };
    n = headers.length; body = b.length;
    rec.outcome = String(cluster.status ?? 200);
  }
  try {
    vm.callIn(root, 'proxy_on_http_call_response', root.id, token, n, body, trailers);
  } finally {
    vm.callResponse = null;
  }
  return true;
}

function drain(until) {
  while (!(until && until())) {
    if (!deliverOne()) return;
  }
}

function tick(vms) {
  out.tickCount++;
  for (const vm of vms) {
    if (vm.tickMs > 0) vm.callIn(vm.root, 'proxy_on_tick', vm.root.id);
  }
  drain();
}

// ---- streams --------------------------------------------------------------------

function runRequest(vms, req, record) {
  const s = {
    props: { ...(req.properties ?? {}) },
    setProps: new Map(),
    reqHeaders: null, respHeaders: null, reqTrailers: null, respTrailers: null,
    reqBody: null, respBody: null,
    continued: { request: new Set(), response: new Set() },
    localReply: null, logPhase: false,
  };
  const ctxs = vms.map((vm, i) => {
    const c = vm.newContext(false, s, i);
    vm.callIn(c, 'proxy_on_context_create', c.id, vm.root.id);
    return c;
  });
  s.reqHeaders = (req.requestHeaders ?? [[':method', 'GET'], [':path', '/']]).map(([k, v]) => [k.toLowerCase(), v]);
  let chunks = (req.requestBody ?? []).map(bytesOf);
  const result = { action: 'continue' };
  let reached = 0; // filters whose request callbacks ran
  for (let i = 0; i < vms.length && !s.localReply; i++) {
    const vm = vms[i], c = ctxs[i];
    reached = i + 1;
    const hasBody = chunks.length > 0;
    vm.stopNext = false;
    let r = vm.callIn(c, 'proxy_on_request_headers', c.id, s.reqHeaders.length, hasBody ? 0 : 1);
    let held = r !== 0 || vm.stopNext;
    if (s.localReply) break;
    const next = [];
    let acc = new Uint8Array(0);
    for (let k = 0; k < chunks.length && !s.localReply; k++) {
      const eos = k === chunks.length - 1;
      s.reqBody = { data: concat(acc, chunks[k]), readonly: false };
      vm.stopNext = false;
      r = vm.callIn(c, 'proxy_on_request_body', c.id, s.reqBody.data.length, eos ? 1 : 0);
      if (r === 0 && !vm.stopNext) { next.push(s.reqBody.data); acc = new Uint8Array(0); held = false; } else { acc = s.reqBody.data; held = true; }
    }
    if (s.localReply) break;
    if (held) {
      // Stopped: the stream waits for proxy_continue_stream (from an http
      // call answer, a tick, a queue) or a local reply.
      drain(() => s.continued.request.has(i) || s.localReply);
      if (s.localReply) break;
      if (!s.continued.request.has(i)) { result.action = 'stalled'; result.stalledAt = vm.name; break; }
      if (s.reqBody && acc.length > 0) next.push(s.reqBody.data);
    }
    chunks = next.length > 1 ? [next.reduce(concat)] : next;
  }
  if (s.localReply) result.action = 'reply';
  const upstreamBody = chunks.length ? chunks.reduce(concat) : new Uint8Array(0);

  // Response: encoder filters run in reverse order; a local reply goes
  // through the filters that saw the request.
  if (result.action !== 'stalled') {
    if (s.localReply) {
      s.respHeaders = [[':status', String(s.localReply.status)], ...s.localReply.headers.map(([k, v]) => [k.toLowerCase(), v])];
    } else {
      s.respHeaders = (req.responseHeaders ?? [[':status', '200']]).map(([k, v]) => [k.toLowerCase(), v]);
    }
    const respBody = s.localReply ? new Uint8Array(Buffer.from(s.localReply.body, 'base64')) : bytesOf(req.responseBody);
    const hasBody = respBody.length > 0;
    for (let i = reached - 1; i >= 0; i--) {
      const vm = vms[i], c = ctxs[i];
      vm.callIn(c, 'proxy_on_response_headers', c.id, s.respHeaders.length, hasBody ? 0 : 1);
      if (hasBody) {
        s.respBody = { data: respBody, readonly: false };
        vm.callIn(c, 'proxy_on_response_body', c.id, respBody.length, 1);
      }
    }
  }
  // End of stream: onDone, then the access log (onLog), then onDelete.
  for (let i = 0; i < vms.length; i++) vms[i].callIn(ctxs[i], 'proxy_on_done', ctxs[i].id);
  s.logPhase = true;
  for (let i = 0; i < vms.length; i++) vms[i].callIn(ctxs[i], 'proxy_on_log', ctxs[i].id);
  for (let i = 0; i < vms.length; i++) { vms[i].callIn(ctxs[i], 'proxy_on_delete', ctxs[i].id); vms[i].contexts.delete(ctxs[i].id); }
  drain();
  if (record) {
    result.requestHeaders = s.reqHeaders;
    result.upstreamBody = b64(upstreamBody);
    result.responseHeaders = s.respHeaders;
    if (s.localReply) result.localReply = s.localReply;
    out.requests.push(result);
  }
  return result;
}

// ---- main ------------------------------------------------------------------------

const t0 = process.hrtime.bigint();
const vms = [];
try {
  for (const spec of input.vms) {
    const vm = startVM(spec);
    vms.push(vm);
  }
  const allConfigured = out.vms.every((v) => v.started && v.configured);
  if (allConfigured) {
    const tickEvery = input.tickEvery ?? 0;
    let n = 0;
    for (const req of input.requests ?? []) {
      const repeat = req.repeat ?? 1;
      for (let r = 0; r < repeat; r++) {
        runRequest(vms, req, out.requests.length < recordRequests && r < (req.recordRepeats ?? 1));
        n++;
        out.requestCount = n;
        if (tickEvery > 0 && n % tickEvery === 0) tick(vms);
      }
      for (let t = 0; t < (req.ticksAfter ?? 0); t++) tick(vms);
    }
    for (let t = 0; t < (input.finalTicks ?? 0); t++) tick(vms);
  }
} catch (e) {
  out.ok = false;
  out.failure = e instanceof VMFailure ? e.message : (e && e.stack) || String(e);
}
for (let i = 0; i < vms.length; i++) {
  const vm = vms[i], rec = out.vms[i];
  rec.failed = vm.failed;
  rec.memoryBytes = vm.memory ? vm.memory.buffer.byteLength : 0;
  rec.allocations = vm.allocations;
  rec.allocatedBytes = vm.allocated;
  rec.tickPeriodMs = vm.tickMs;
  rec.gcCycles = vm.gcCycles;
  rec.metrics = {};
  for (const m of vm.metrics.values()) rec.metrics[m.name] = Number(m.value);
  rec.stderrTail = vm.stderrLines.concat(vm.stderr ? [vm.stderr] : []).slice(-20);
  if (vm.fatalAt) rec.stderrTail = [...vm.fatalAt, ...vm.fatalLines, '…', ...rec.stderrTail];
  if (vm.failed) { out.ok = false; out.failure ||= vm.failed; out.stderrTail = rec.stderrTail; }
}
// A VM that failed during start (missing import, no ABI version) is not in vms.
if (!out.ok && out.stderrTail.length === 0) {
  for (const v of vms) if (v.stderrLines.length) out.stderrTail = v.stderrLines.slice(-40);
}
out.elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
process.stdout.write(JSON.stringify(out));
