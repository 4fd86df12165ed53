/**
 * The VFIO migration v2 state machine as the kernel encodes it:
 * `vfio_mig_get_next_state()` in drivers/vfio/vfio_main.c, with its
 * `vfio_from_fsm_table` and `state_flags_table` copied entry for entry.
 * Drivers call it in a loop, taking one arc at a time, until the device is in
 * the requested state.
 *
 * @module
 */

import { EINVAL } from "../../sys/errno.ts";
import {
  VFIO_DEVICE_STATE_ERROR as ERROR,
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
  VFIO_DEVICE_STATE_PRE_COPY_P2P as PRE_COPY_P2P,
  VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
  VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY,
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from "../../vfio/constants.ts";
import { fail } from "./user_memory.ts";

/** `VFIO_DEVICE_NUM_STATES`. */
export const NUM_STATES = 8;

// vfio_from_fsm_table[cur][new]: the next state on the way from cur to new.
// Rows and columns are in state-number order: ERROR, STOP, RUNNING,
// STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P.
const FROM_FSM_TABLE: readonly (readonly number[])[] = [
  /* ERROR */ [ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR],
  /* STOP */ [
    ERROR,
    STOP,
    RUNNING_P2P,
    STOP_COPY,
    RESUMING,
    RUNNING_P2P,
    RUNNING_P2P,
    RUNNING_P2P,
  ],
  /* RUNNING */ [
    ERROR,
    RUNNING_P2P,
    RUNNING,
    RUNNING_P2P,
    RUNNING_P2P,
    RUNNING_P2P,
    PRE_COPY,
    RUNNING_P2P,
  ],
  /* STOP_COPY */ [ERROR, STOP, STOP, STOP_COPY, STOP, STOP, ERROR, ERROR],
  /* RESUMING */ [ERROR, STOP, STOP, STOP, RESUMING, STOP, STOP, STOP],
  /* RUNNING_P2P */ [
    ERROR,
    STOP,
    RUNNING,
    STOP,
    STOP,
    RUNNING_P2P,
    RUNNING,
    PRE_COPY_P2P,
  ],
  /* PRE_COPY */ [
    ERROR,
    RUNNING,
    RUNNING,
    PRE_COPY_P2P,
    RUNNING,
    RUNNING,
    PRE_COPY,
    PRE_COPY_P2P,
  ],
  /* PRE_COPY_P2P */ [
    ERROR,
    RUNNING_P2P,
    RUNNING_P2P,
    STOP_COPY,
    RUNNING_P2P,
    RUNNING_P2P,
    PRE_COPY,
    PRE_COPY_P2P,
  ],
];

// state_flags_table: the migration flags a state needs. ERROR needs every
// bit (~0U), so it is never a legal current or target state.
const STATE_FLAGS: readonly number[] = [
  /* ERROR */ 0xffff_ffff,
  /* STOP */ VFIO_MIGRATION_STOP_COPY,
  /* RUNNING */ VFIO_MIGRATION_STOP_COPY,
  /* STOP_COPY */ VFIO_MIGRATION_STOP_COPY,
  /* RESUMING */ VFIO_MIGRATION_STOP_COPY,
  /* RUNNING_P2P */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P,
  /* PRE_COPY */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY,
  /* PRE_COPY_P2P */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY,
];

function supported(state: number, flags: number): boolean {
  return state < NUM_STATES && ((STATE_FLAGS[state] & flags) >>> 0) === STATE_FLAGS[state] >>> 0;
}

/**
 * `vfio_mig_get_next_state`: the next arc on the way from `cur` to `target`,
 * skipping over states the device's flags do not offer.
 *
 * @param cur The device's state.
 * @param target The state asked for.
 * @param flags The device's `VFIO_MIGRATION_*` flags.
 * @returns The next state (`cur` itself when already there).
 * @throws {KernelError} `EINVAL` for an unsupported or unknown state on either
 *   side (ERROR included), or a blocked pair such as `STOP_COPY` → `PRE_COPY`.
 */
export function nextState(cur: number, target: number, flags: number): number {
  if (!supported(cur, flags) || !supported(target, flags)) fail(EINVAL);
  let next = FROM_FSM_TABLE[cur][target];
  // The ERROR test is the upstream fix "vfio: Fix the skip loop on the ERROR
  // sentinel": before it, a blocked pair (STOP_COPY -> PRE_COPY) spun forever.
  // 6.12.95 (the test kernel) has no such test: on mtty, which offers
  // PRE_COPY, STOP_COPY -> PRE_COPY never returns (tests/faithfulness_mtty_scenario.ts).
  while (next !== ERROR && !supported(next, flags)) next = FROM_FSM_TABLE[next][target];
  if (next === ERROR) fail(EINVAL);
  return next;
}

/**
 * The path the kernel takes from `cur` to `target`, one arc per element.
 *
 * @param cur The device's state.
 * @param target The state asked for.
 * @param flags The device's `VFIO_MIGRATION_*` flags.
 * @returns The states entered, in order, ending with `target` (empty when `cur === target`).
 * @throws {KernelError} `EINVAL` as {@linkcode nextState}.
 */
export function statePath(cur: number, target: number, flags: number): number[] {
  const path: number[] = [];
  for (let s = cur; s !== target;) {
    s = nextState(s, target, flags);
    path.push(s);
  }
  return path;
}
