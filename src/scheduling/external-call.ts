import { badInput } from '../errors.ts';

export interface ExternalCall {
  connectorId: string;
  method: string;
}

export const MAX_METHOD_LENGTH = 1000;
const CONNECTOR_ID = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/**
 * Parses `ConnectorId:MethodName`: split at the FIRST colon, trim both sides. The method may
 * hold any Unicode, spaces and further colons. Input is expected NFC-normalised already.
 */
export function parseExternalCall(text: string, field = 'externalCall'): ExternalCall {
  const colon = text.indexOf(':');
  if (colon < 0) {
    throw badInput(field, `External call "${text}" must be of the form ConnectorId:MethodName.`);
  }
  const connectorId = text.slice(0, colon).trim();
  const method = text.slice(colon + 1).trim();
  if (!CONNECTOR_ID.test(connectorId)) {
    throw badInput(field, `Connector id "${connectorId}" must start with a letter or _ and contain only letters, digits, _ . -.`);
  }
  if (method.length === 0) throw badInput(field, 'The method name after the colon must not be empty.');
  if (method.length > MAX_METHOD_LENGTH) {
    throw badInput(field, `The method name must be at most ${MAX_METHOD_LENGTH} characters.`);
  }
  return { connectorId, method };
}

export const formatExternalCall = (call: ExternalCall): string => `${call.connectorId}:${call.method}`;
