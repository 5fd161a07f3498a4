export { TcpStack, type TcpHost, type TcpFlowInfo, type TcpPort } from './stack.js';
export type { TcpOptions } from './options.js';
