// Malformed requests are the client's error (SPEC §8: a coded 4xx, never a 5xx). What the fuzz
// test found answered as unexpected errors (INTERNAL_SERVER_ERROR, logged as such) or uncoded:
//  - a `variables` or `extensions` parameter that is not JSON (a GET's query string, a form
//    body): yoga's parser throws a bare SyntaxError;
//  - a multipart request whose `operations` or `map` field is not JSON: an error with no code;
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
          // yoga's multipart parser refuses a bad `operations` or `map` field with no code (HTTP 200).
          if (error instanceof GraphQLError && error.extensions['code'] === undefined) throw refused(error.message, 'BAD_REQUEST');
          throw error;
        }
      });
    },
    onParse({ parseFn, setParseFn }) {
      setParseFn((source, options) => {
        try {
          return parseFn(source, options);
        } catch (error) {
          if (error instanceof RangeError)
            throw refused('Syntax Error: the document is nested too deeply to be read.', 'GRAPHQL_PARSE_FAILED');
          throw error;
        }
      });
    },
  };
}
