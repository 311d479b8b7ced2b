import { renderGraphiQL } from '@graphql-yoga/render-graphiql';

// GraphiQL sends the headers of its Headers tab with queries and mutations, but not to graphql-ws:
// its subscriptions connect with empty connectionParams, which a service with tokens refuses
// (4401). So the page gets a fetcher of its own (SPEC §8): HTTP operations carry the tab's
// headers, and each subscription opens a graphql-ws connection whose connectionParams carry the
// tab's Authorization header. Plain browser JavaScript, inlined into the page like GraphiQL
// itself (no CDN); a test runs the same source in Node against the service.

/** `serverJobsFetcher(endpoint)`: a GraphiQL fetcher. Source text, run by the browser. */
export const TOKEN_FETCHER_SOURCE = String.raw`
function serverJobsFetcher(endpoint) {
  var wsUrl = endpoint.replace(/^http/, 'ws');
  function authorizationOf(headers) {
    for (var name in headers || {}) if (name.toLowerCase() === 'authorization') return String(headers[name]);
    return null;
  }
  function isSubscription(params, opts) {
    var doc = opts && opts.documentAST;
    var ops = doc ? doc.definitions.filter(function (d) { return d.kind === 'OperationDefinition'; }) : [];
    var op = ops.find(function (d) { return d.name && d.name.value === params.operationName; }) || (ops.length === 1 ? ops[0] : null);
    if (op) return op.operation === 'subscription';
    return /^\s*subscription\b/.test(params.query || '');
  }
  function overHttp(params, headers) {
    var sent = Object.assign({ 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' }, headers);
    return fetch(endpoint, { method: 'POST', credentials: 'same-origin', headers: sent, body: JSON.stringify(params) }).then(function (response) {
      return response.text().then(function (text) {
        try { return JSON.parse(text); } catch (e) { return { errors: [{ message: 'HTTP ' + response.status + ': ' + text.slice(0, 500) }] }; }
      });
    });
  }
  function overWebSocket(params, authorization) {
    return {
      subscribe: function (observer) {
        var socket = new WebSocket(wsUrl, 'graphql-transport-ws');
        var ended = false;
        function end() { ended = true; if (socket.readyState <= 1) socket.close(1000, 'Normal Closure'); }
        socket.onopen = function () {
          socket.send(JSON.stringify({ type: 'connection_init', payload: authorization ? { authorization: authorization } : {} }));
        };
        socket.onmessage = function (event) {
          var message = JSON.parse(String(event.data));
          if (message.type === 'connection_ack') {
            socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: params.query, variables: params.variables, operationName: params.operationName } }));
          } else if (message.type === 'ping') {
            socket.send(JSON.stringify({ type: 'pong' }));
          } else if (message.type === 'next') {
            observer.next(message.payload);
          } else if (message.type === 'error') {
            observer.next({ errors: message.payload });
            end();
            observer.complete();
          } else if (message.type === 'complete') {
            end();
            observer.complete();
          }
        };
        socket.onclose = function (event) {
          if (ended) return;
          ended = true;
          // Shown in the response pane as an answer (GraphiQL would print an Error with its stack).
          var unauthorized = event.code === 4401;
          var why = unauthorized ? 'no valid token: put "Authorization": "Bearer <token>" in the Headers tab' : event.reason || 'connection closed';
          observer.next({ errors: [{ message: 'Subscription ended (' + event.code + '): ' + why, extensions: { code: unauthorized ? 'UNAUTHENTICATED' : 'CONNECTION_CLOSED' } }] });
          observer.complete();
        };
        return {
          unsubscribe: function () {
            if (ended) return;
            if (socket.readyState === 1) socket.send(JSON.stringify({ id: '1', type: 'complete' }));
            end();
          },
        };
      },
    };
  }
  return function (params, opts) {
    var headers = (opts && opts.headers) || {};
    return isSubscription(params, opts) ? overWebSocket(params, authorizationOf(headers)) : overHttp(params, headers);
  };
}
`;

const CALL = 'YogaGraphiQL.renderYogaGraphiQL(';

/**
 * Yoga's offline GraphiQL page with the fetcher above: the page's last call to
 * `YogaGraphiQL.renderYogaGraphiQL(root, options)` gets `options.fetcher`.
 */
export function renderGraphiQLWithToken(options: Parameters<typeof renderGraphiQL>[0]): string {
  const page = renderGraphiQL(options);
  const at = page.lastIndexOf(CALL);
  if (at < 0) throw new Error('the GraphiQL page has no renderYogaGraphiQL call to give the token fetcher to');
  const render = `(function (root, options) {
    ${TOKEN_FETCHER_SOURCE}
    var endpoint = new URL(options.endpoint || location.pathname, location.href).toString();
    var withFetcher = Object.assign({}, options, { fetcher: serverJobsFetcher(endpoint) });
    delete withFetcher.endpoint;
    return YogaGraphiQL.renderYogaGraphiQL(root, withFetcher);
  })(`;
  return page.slice(0, at) + render + page.slice(at + CALL.length);
}
