// An AssemblyScript proxy-wasm guest (@solo-io/proxy-runtime, ABI 0.2.0):
// adds x-as-config to the request with the plugin configuration, or
// "none" when the configuration is empty. Built by build.sh.
export * from "./node_modules/@solo-io/proxy-runtime/assembly/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "./node_modules/@solo-io/proxy-runtime/assembly/index";

class ConfigRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new AddConfig(context_id, this);
  }
}

class AddConfig extends Context {
  constructor(context_id: u32, root_context: ConfigRoot) {
    super(context_id, root_context);
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const cfg = this.root_context.getConfiguration();
    stream_context.headers.request.add("x-as-config", cfg == "" ? "none" : cfg);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new ConfigRoot(context_id); }, "asguest");
