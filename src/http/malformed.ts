// Malformed requests are the client's error (SPEC §8: a coded 4xx, never a 5xx). Two that the
// fuzz test found answered as unexpected errors (INTERNAL_SERVER_ERROR, logged as such):
//  - a `variables` or `extensions` parameter that is not JSON (a GET's query string, a form
//    body): yoga's parser throws a bare SyntaxError;
//  - a document nested so deeply (a list literal or a selection a thousand levels down) that
//    graphql-js's recursive parser runs out of stack: a RangeError.
import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

const refused = (message: string, code: string) => new GraphQLError(message, { extensions: { code, http: { status: 400 } } });

/** Last in the plugin list, so that it wraps whatever parser the others installed. */
export function useMalformedRequestErrors(): Plugin {
  return {
    onRequestParse({ requestParser, setRequestParser }) {
      if (!requestParser) return;
      setRequestParser(async (request) => {
        try {
          return await requestParser(request);
        } catch (error) {
          if (error instanceof SyntaxError) throw refused('The variables or extensions parameter is not valid JSON.', 'BAD_REQUEST');
          throw error;
        }
      });
    },
    onParse({ parseFn, setParseFn }) {
      setParseFn((source, options) => {
        try {
          return parseFn(source, options);
        } catch (error) {
          if (error instanceof RangeError) throw refused('Syntax Error: the document is nested too deeply to be read.', 'GRAPHQL_PARSE_FAILED');
          throw error;
        }
      });
    },
  };
}
