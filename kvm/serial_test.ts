import assert from "node:assert/strict";
import { COM1_PORT, Serial8250 } from "./serial.ts";

Deno.test("Serial8250 collects transmitted bytes into lines and reports an empty transmitter", () => {
  const lines: string[] = [];
  const uart = new Serial8250({ onLine: (l) => lines.push(l) });
  const put = (s: string) => {
    for (const c of new TextEncoder().encode(s)) uart.write(COM1_PORT, 1, c);
  };
  put("heartbeat 1\r\n\nnot yet");
  assert.deepEqual(lines, ["heartbeat 1", ""]);
  assert.equal(uart.read(COM1_PORT + 5), 0x60, "LSR: THRE and TEMT");
  uart.flush();
  assert.deepEqual(lines, ["heartbeat 1", "", "not yet"]);
  assert.equal(uart.bytesWritten, 21);
});

Deno.test("Serial8250 keeps other registers, and DLAB diverts the transmit register", () => {
  const lines: string[] = [];
  const uart = new Serial8250({ onLine: (l) => lines.push(l) });
  uart.write(COM1_PORT + 7, 1, 0x5a);
  assert.equal(uart.read(COM1_PORT + 7), 0x5a, "scratch");
  uart.write(COM1_PORT + 3, 1, 0x80); // DLAB
  uart.write(COM1_PORT, 1, 0x01); // divisor latch low, not data
  uart.write(COM1_PORT + 3, 1, 0x03);
  uart.write(COM1_PORT, 1, 0x41);
  uart.write(COM1_PORT, 1, 0x0a);
  assert.deepEqual(lines, ["A"]);
});
