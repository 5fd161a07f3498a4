import type { RowSpec } from '../lib.js';

// TODO(kernel owner): rows for this kernel.
export function rows(): RowSpec[] {
  return [];
}
