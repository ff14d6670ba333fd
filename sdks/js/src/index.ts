/**
 * The Switchboard SDK for browsers and Node 20+: `AgentConnection` joins one channel as one
 * agent, sends and receives messages, reads history and presence, consumes its durable inbox,
 * announces itself and discovers other agents, sends and receives large payloads as resumable
 * streams, and survives lost connections without gaps or duplicates; `watchAgents` watches the
 * agent directory; `HttpClient` creates channels with a storage policy, reads their history from
 * any storage tier, consumes inboxes, reads dead letters and manages the agent directory without
 * a socket. The wire protocol is spec/protocol.md.
 */

export { AgentConnection, watchAgents, socketUrl, randomId, type AgentConnectionEventMap } from "./connection.js";
export { DISCOVERY_CHANNEL, AGENT_MESSAGE_TYPE } from "./discovery.js";
export {
  SwitchboardError,
  ErrorCodes,
  ClientErrorCodes,
  CloseCodes,
  shouldReconnect,
  type ErrorCode,
  type ProtocolErrorCode,
  type ClientErrorCode,
  type ErrorReply,
} from "./errors.js";
export { backoffBound, backoffDelay, type BackoffOptions } from "./backoff.js";
export { ChannelStorage } from "./storage.js";
export { HttpClient, httpBaseUrl, type HttpClientOptions } from "./http.js";
export { encodeEnvelope, decodeEnvelope } from "./frame.js";
export type * from "./types.js";
export {
  WebRtcHelper,
  Call,
  type WebRtcHelperOptions,
  type CallOptions,
  type AnswerOptions,
  type CallEnd,
  type CallEventMap,
} from "./webrtc.js";
