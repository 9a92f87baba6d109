export * from './errors.js';
export * from './topics.js';
export * from './messages.js';
export * from './validator.js';
export * from './manifest.js';
export * from './monitoring.js';
