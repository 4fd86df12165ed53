/*
 * Entry of the deno-vmm test guest. The VMM starts the vCPU here in 64-bit
 * mode with RSP at GUEST_STACK_TOP.
 */
	.section .text.entry, "ax"
	.globl _start
	.code64
_start:
	call guest_main
1:	hlt
	jmp 1b

	.section .note.GNU-stack, "", @progbits
