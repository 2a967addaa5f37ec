/**
 * A `type: module` filter: copies the request id that weir kept or generated into a response header,
 * so that a client can quote it in a bug report. The header name comes from the filter's `config`, and a
 * route can change it with `filter_overrides: { <filter name>: { config: { header: ... } } }`.
 *
 * Node runs this file through type stripping: types are fine, `enum` and parameter properties are not.
 */
import type { Filter, FilterCallbacks, FactoryContext } from '../../src/filters/contract.ts';
import type { HeaderMap } from '../../src/core/headers.ts';

interface EchoConfig {
  header?: string;
}

let defaultHeader = 'x-request-id';

export default {
  /** Runs once per worker thread when a config (or a reload) builds the filter. */
  init(config: EchoConfig | undefined, ctx: FactoryContext): void {
    defaultHeader = (config?.header ?? defaultHeader).toLowerCase();
    ctx.log('debug', `echoing request ids in "${defaultHeader}"`);
  },

  /** Runs once per request; keep it cheap. */
  create(callbacks: FilterCallbacks, _config: EchoConfig | undefined, perRoute: EchoConfig | undefined): Filter {
    const header = perRoute?.header?.toLowerCase() ?? defaultHeader;
    return {
      onResponseHeaders(headers: HeaderMap) {
        const id = callbacks.info.requestId;
        if (id !== '') headers.set(header, id);
        return 'continue';
      },
    };
  },
};
