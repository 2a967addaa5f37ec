// Proxy-Wasm test filters built with the public AssemblyScript SDK (@solo-io/proxy-runtime 0.1.8).
// One module, one root context per behaviour; the filter config picks one with root_id.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues,
  stream_context, send_local_response, continue_request, log, LogLevelValues, Counter, Gauge, Histogram,
  HeaderPair, Headers, GrpcStatusValues,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, set_tick_period_milliseconds, set_property, get_status, BufferTypeValues, BaseContext } from "@solo-io/proxy-runtime/runtime";
import { free } from "@solo-io/proxy-runtime/malloc";

// The SDK's own wrappers for these calls are incomplete in 0.1.8, so the filters declare the imports they need.
@external("env", "proxy_get_shared_data")
declare function proxy_get_shared_data(key_ptr: usize, key_size: usize, value_ptr_ptr: usize, value_size_ptr: usize, cas_ptr: usize): u32;
@external("env", "proxy_set_shared_data")
declare function proxy_set_shared_data(key_ptr: usize, key_size: usize, value_ptr: usize, value_size: usize, cas: u32): u32;
@external("env", "proxy_register_shared_queue")
declare function proxy_register_shared_queue(name_ptr: usize, name_size: usize, token_ptr: usize): u32;
@external("env", "proxy_resolve_shared_queue")
declare function proxy_resolve_shared_queue(vm_ptr: usize, vm_size: usize, name_ptr: usize, name_size: usize, token_ptr: usize): u32;
@external("env", "proxy_enqueue_shared_queue")
declare function proxy_enqueue_shared_queue(token: u32, data_ptr: usize, data_size: usize): u32;
@external("env", "proxy_dequeue_shared_queue")
declare function proxy_dequeue_shared_queue(token: u32, data_ptr_ptr: usize, data_size_ptr: usize): u32;
@external("env", "proxy_get_metric")
declare function proxy_get_metric(id: u32, value_ptr: usize): u32;
@external("env", "proxy_get_property")
declare function proxy_get_property(path_ptr: usize, path_size: usize, value_ptr_ptr: usize, value_size_ptr: usize): u32;
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: u32, start: u32, size: u32, data_ptr: usize, data_size: usize): u32;

class Out {
  ptr: usize = 0;
  size: usize = 0;
  cas: u32 = 0;
  take(): ArrayBuffer {
    const copy = new ArrayBuffer(<i32>this.size);
    if (this.size > 0) {
      memory.copy(changetype<usize>(copy), this.ptr, this.size);
      free(this.ptr);
    }
    return copy;
  }
}

function ptrOf(o: Out): usize { return changetype<usize>(o) + offsetof<Out>("ptr"); }
function sizeOf(o: Out): usize { return changetype<usize>(o) + offsetof<Out>("size"); }
function casOf(o: Out): usize { return changetype<usize>(o) + offsetof<Out>("cas"); }

class SharedValue { ok: bool = false; value: string = ""; cas: u32 = 0; }

function getShared(key: string): SharedValue {
  const k = String.UTF8.encode(key);
  const o = new Out();
  const r = proxy_get_shared_data(changetype<usize>(k), k.byteLength, ptrOf(o), sizeOf(o), casOf(o));
  const result = new SharedValue();
  result.ok = r == 0;
  result.value = r == 0 ? String.UTF8.decode(o.take()) : "";
  result.cas = o.cas;
  return result;
}

function setShared(key: string, value: string, cas: u32): u32 {
  const k = String.UTF8.encode(key);
  const v = String.UTF8.encode(value);
  return proxy_set_shared_data(changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength, cas);
}

function property(path: string): string {
  const p = String.UTF8.encode(path);
  const o = new Out();
  const r = proxy_get_property(changetype<usize>(p), p.byteLength, ptrOf(o), sizeOf(o));
  if (r != 0) return "<" + r.toString() + ">";
  return String.UTF8.decode(o.take());
}

function propertyInt(path: string): string {
  const p = String.UTF8.encode(path);
  const o = new Out();
  const r = proxy_get_property(changetype<usize>(p), p.byteLength, ptrOf(o), sizeOf(o));
  if (r != 0) return "<" + r.toString() + ">";
  const b = o.take();
  return load<i64>(changetype<usize>(b)).toString();
}

function header(key: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(key), String.UTF8.encode(value));
}

// headers: add, replace, remove, read request headers on the response path.
class HeadersRoot extends RootContext {
  createContext(context_id: u32): Context { return new HeadersFilter(context_id, this); }
}
class HeadersFilter extends Context {
  constructor(context_id: u32, root: HeadersRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const h = stream_context.headers.request;
    h.add("x-wasm", this.root_context.getConfiguration());
    h.replace("x-replace", "replaced");
    h.remove("x-remove");
    h.add("x-header-count", n.toString());
    h.add("x-eos", end_of_stream ? "1" : "0");
    h.add("x-seen-in", h.get("x-in"));
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-response-wasm", stream_context.headers.request.get(":path"));
    stream_context.headers.response.replace("server", "wasm");
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new HeadersRoot(id), "headers");

// body: buffers the request body (cumulative sizes), replaces it, appends to the response body.
class BodyRoot extends RootContext {
  createContext(context_id: u32): Context { return new BodyFilter(context_id, this); }
}
class BodyFilter extends Context {
  sizes: string = "";
  constructor(context_id: u32, root: BodyRoot) { super(context_id, root); }
  // The body changes size, so the lengths the client and the upstream sent no longer hold (as with Envoy).
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }
  onRequestBody(size: usize, end_of_stream: bool): FilterDataStatusValues {
    this.sizes += (this.sizes.length > 0 ? "," : "") + size.toString();
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, <u32>size));
    const replacement = String.UTF8.encode("sizes=" + this.sizes + ";body=" + body.toUpperCase());
    proxy_set_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, <u32>size, changetype<usize>(replacement), replacement.byteLength);
    return FilterDataStatusValues.Continue;
  }
  onResponseBody(size: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const tail = String.UTF8.encode("+wasm");
    proxy_set_buffer_bytes(BufferTypeValues.HttpResponseBody, <u32>size, 0, changetype<usize>(tail), tail.byteLength);
    return FilterDataStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new BodyRoot(id), "body");

// local_reply: /deny gets a 403 from the filter although the callback returns Continue.
class ReplyRoot extends RootContext {
  createContext(context_id: u32): Context { return new ReplyFilter(context_id, this); }
}
class ReplyFilter extends Context {
  constructor(context_id: u32, root: ReplyRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (stream_context.headers.request.get(":path") == "/deny") {
      const headers: Headers = [header("x-denied-by", "wasm")];
      send_local_response(403, "denied by wasm", String.UTF8.encode("denied\n"), headers, GrpcStatusValues.InvalidCode);
    }
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new ReplyRoot(id), "local_reply");

// http_call: asks the cluster named in the configuration; 200 adds x-auth and continues, else 401.
class CallRoot extends RootContext {
  createContext(context_id: u32): Context { return new CallFilter(context_id, this); }
}
class CallFilter extends Context {
  constructor(context_id: u32, root: CallRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const headers: Headers = [header(":method", "GET"), header(":path", "/auth" + stream_context.headers.request.get(":path")), header(":authority", "auth")];
    this.root_context.httpCall(this.root_context.getConfiguration(), headers, new ArrayBuffer(0), [], 5000, this, onAuthResponse);
    return FilterHeadersStatusValues.StopIteration;
  }
}
function onAuthResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  const status = stream_context.headers.http_callback.get(":status");
  if (headers > 0 && status == "200") {
    const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpCallResponseBody, 0, <u32>body_size));
    stream_context.headers.request.add("x-auth", body);
    continue_request();
  } else if (headers == 0) {
    const st = get_status();
    send_local_response(502, "auth call failed", String.UTF8.encode("call failed: " + st.status.toString() + " " + String.UTF8.decode(st.data) + "\n"), [], GrpcStatusValues.InvalidCode);
  } else {
    send_local_response(401, "auth failed", String.UTF8.encode("auth said " + status + "\n"), [], GrpcStatusValues.InvalidCode);
  }
}

// root_call: the root context calls the cluster named in the configuration from its first tick, outside any request.
class RootCallRoot extends RootContext {
  called: bool = false;
  createContext(context_id: u32): Context { return new RootCallFilter(context_id, this); }
  onConfigure(size: u32): bool {
    super.onConfigure(size);
    set_tick_period_milliseconds(5);
    return true;
  }
  onTick(): void {
    if (this.called) return;
    this.called = true;
    set_tick_period_milliseconds(0);
    const headers: Headers = [header(":method", "GET"), header(":path", "/auth/allowed"), header(":authority", "auth")];
    this.httpCall(this.getConfiguration(), headers, new ArrayBuffer(0), [], 5000, this, onRootCallResponse);
  }
}
function onRootCallResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpCallResponseBody, 0, <u32>body_size));
  setShared("root-call", stream_context.headers.http_callback.get(":status") + " " + body, 0);
}
class RootCallFilter extends Context {
  constructor(context_id: u32, root: RootCallRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const v = getShared("root-call");
    stream_context.headers.request.add("x-root-call", v.ok ? v.value : "pending");
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new RootCallRoot(id), "root_call");
registerRootContext((id: u32): RootContext => new CallRoot(id), "http_call");

// tick: a 10 ms timer (30 days with the configuration "30d") counts ticks in shared data; requests read the count.
class TickRoot extends RootContext {
  createContext(context_id: u32): Context { return new TickFilter(context_id, this); }
  onConfigure(size: u32): bool {
    super.onConfigure(size);
    set_tick_period_milliseconds(this.getConfiguration() == "30d" ? 2592000000 : 10);
    return true;
  }
  onTick(): void {
    const v = getShared("ticks");
    setShared("ticks", (v.ok ? <i32>parseInt(v.value) + 1 : 1).toString(), 0);
  }
}
class TickFilter extends Context {
  constructor(context_id: u32, root: TickRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const v = getShared("ticks");
    stream_context.headers.request.add("x-ticks", v.ok ? v.value : "0");
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new TickRoot(id), "tick");

// Module globals live in one VM: they tell which requests ran in the same VM (worker).
let localHits: i32 = 0;
let vmCount: i32 = 0;

// vmcount: counts requests in a module global; filters that share a VM see one counter.
class VmCountRoot extends RootContext {
  createContext(context_id: u32): Context { return new VmCountFilter(context_id, this); }
}
class VmCountFilter extends Context {
  constructor(context_id: u32, root: VmCountRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    vmCount++;
    stream_context.headers.request.add("x-vmcount-" + this.root_context.getConfiguration(), vmCount.toString());
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new VmCountRoot(id), "vmcount");

// shared: x-shared-set stores a value; every request reads it back and counts hits with compare-and-swap.
class SharedRoot extends RootContext {
  createContext(context_id: u32): Context { return new SharedFilter(context_id, this); }
}
class SharedFilter extends Context {
  constructor(context_id: u32, root: SharedRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const h = stream_context.headers.request;
    const set = h.get("x-shared-set");
    if (set.length > 0) setShared("value", set, 0);
    const v = getShared("value");
    h.add("x-shared-get", v.ok ? v.value : "none");
    let hits = 0;
    let attempts = 0;
    while (attempts < 100) {
      attempts++;
      const cur = getShared("hits");
      hits = cur.ok ? <i32>parseInt(cur.value) + 1 : 1;
      if (setShared("hits", hits.toString(), cur.ok ? cur.cas : 0) == 0) break;
    }
    h.add("x-hits", hits.toString());
    localHits++;
    h.add("x-local-hits", localHits.toString());
    const stale = setShared("hits", "0", 12345678);
    h.add("x-stale-cas", stale.toString());
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new SharedRoot(id), "shared");

// queue: the root registers queue "q" and moves each item it is told about into shared data.
class QueueRoot extends RootContext {
  token: u32 = 0;
  createContext(context_id: u32): Context { return new QueueFilter(context_id, this); }
  onConfigure(size: u32): bool {
    super.onConfigure(size);
    const name = String.UTF8.encode("q");
    const o = new Out();
    proxy_register_shared_queue(changetype<usize>(name), name.byteLength, casOf(o));
    this.token = o.cas;
    return true;
  }
  onQueueReady(token: u32): void {
    const o = new Out();
    const r = proxy_dequeue_shared_queue(token, ptrOf(o), sizeOf(o));
    if (r == 0) setShared("dequeued", String.UTF8.decode(o.take()), 0);
    else setShared("dequeue-status", r.toString(), 0);
  }
}
class QueueFilter extends Context {
  constructor(context_id: u32, root: QueueRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const h = stream_context.headers.request;
    const item = h.get("x-enqueue");
    if (item.length > 0) {
      const vm = String.UTF8.encode("");
      const name = String.UTF8.encode("q");
      const o = new Out();
      const r = proxy_resolve_shared_queue(changetype<usize>(vm), 0, changetype<usize>(name), name.byteLength, casOf(o));
      const data = String.UTF8.encode(item);
      h.add("x-enqueue-status", r == 0 ? proxy_enqueue_shared_queue(o.cas, changetype<usize>(data), data.byteLength).toString() : "resolve " + r.toString());
    }
    const last = getShared("dequeued");
    h.add("x-dequeued", last.ok ? last.value : "none");
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new QueueRoot(id), "queue");

// metrics: a counter, a gauge and a histogram; the counter's value is read back.
class MetricsRoot extends RootContext {
  requests: Counter | null = null;
  inflight: Gauge | null = null;
  sizes: Histogram | null = null;
  createContext(context_id: u32): Context { return new MetricsFilter(context_id, this); }
  onConfigure(size: u32): bool {
    super.onConfigure(size);
    this.requests = new Counter("as_requests");
    this.inflight = new Gauge("as_inflight");
    this.sizes = new Histogram("as_header_count");
    return true;
  }
}
class MetricsFilter extends Context {
  constructor(context_id: u32, root: MetricsRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as MetricsRoot;
    const counter = root.requests as Counter;
    counter.increment(1);
    (root.inflight as Gauge).increment(5);
    (root.inflight as Gauge).increment(-2);
    const hist = root.sizes as Histogram;
    hist.record(hist.metric_id, <u64>n);
    const value = new Out();
    const r = proxy_get_metric(counter.metric_id, changetype<usize>(value) + offsetof<Out>("ptr"));
    stream_context.headers.request.add("x-requests", r == 0 ? load<u64>(changetype<usize>(value) + offsetof<Out>("ptr")).toString() : "error " + r.toString());
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new MetricsRoot(id), "metrics");

// properties: well-known paths and a property set by the filter itself.
class PropsRoot extends RootContext {
  createContext(context_id: u32): Context { return new PropsFilter(context_id, this); }
}
class PropsFilter extends Context {
  constructor(context_id: u32, root: PropsRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const h = stream_context.headers.request;
    h.add("x-p-path", property("request\0path"));
    h.add("x-p-url-path", property("request\0url_path"));
    h.add("x-p-method", property("request\0method"));
    h.add("x-p-host", property("request\0host"));
    h.add("x-p-header", property("request\0headers\0x-in"));
    h.add("x-p-source", property("source\0address"));
    h.add("x-p-source-port", propertyInt("source\0port"));
    h.add("x-p-plugin", property("plugin_name"));
    h.add("x-p-vm", property("plugin_vm_id"));
    h.add("x-p-route", property("xds\0route_name"));
    h.add("x-p-missing", property("no\0such\0thing"));
    set_property("my_prop", String.UTF8.encode("set-by-wasm"));
    h.add("x-p-own", property("my_prop"));
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-p-code", propertyInt("response\0code"));
    return FilterHeadersStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new PropsRoot(id), "properties");

// lifecycle: logs each callback, so a test can check the order on_done → on_log → on_delete.
class LifeRoot extends RootContext {
  createContext(context_id: u32): Context { return new LifeFilter(context_id, this); }
}
class LifeFilter extends Context {
  constructor(context_id: u32, root: LifeRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues { log(LogLevelValues.info, "life: request_headers"); return FilterHeadersStatusValues.Continue; }
  onResponseHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues { log(LogLevelValues.info, "life: response_headers"); return FilterHeadersStatusValues.Continue; }
  onDone(): bool { log(LogLevelValues.info, "life: done"); return true; }
  onLog(): void { log(LogLevelValues.info, "life: log " + stream_context.headers.response.get(":status")); }
  onDelete(): void { log(LogLevelValues.info, "life: delete"); }
}
registerRootContext((id: u32): RootContext => new LifeRoot(id), "lifecycle");

// pause: holds the request headers until the next tick of the root (set_effective_context + continue).
let pausedContext: u32 = 0;
class PauseRoot extends RootContext {
  createContext(context_id: u32): Context { return new PauseFilter(context_id, this); }
  onTick(): void {
    if (pausedContext != 0) {
      const id = pausedContext;
      pausedContext = 0;
      set_tick_period_milliseconds(0);
      const ctx = new Context(id, this);
      ctx.setEffectiveContext();
      stream_context.headers.request.add("x-resumed-by", "tick");
      continue_request();
    }
  }
}
class PauseFilter extends Context {
  constructor(context_id: u32, root: PauseRoot) { super(context_id, root); }
  onRequestHeaders(n: u32, end_of_stream: bool): FilterHeadersStatusValues {
    pausedContext = this.context_id;
    set_tick_period_milliseconds(5);
    return FilterHeadersStatusValues.StopIteration;
  }
  onRequestBody(size: usize, end_of_stream: bool): FilterDataStatusValues {
    stream_context.headers.request.add("x-body-seen", "yes");
    return FilterDataStatusValues.Continue;
  }
}
registerRootContext((id: u32): RootContext => new PauseRoot(id), "pause");
