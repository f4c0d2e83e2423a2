/*
 * The companion core's only entry assembly.
 *
 * - An arm64 Linux `Image` header, so QEMU `-kernel`, U-Boot `booti` and the Raspberry Pi
 *   firmware all load and enter the same file.
 * - Primary entry: check EL2, apply our own R_AARCH64_RELATIVE relocations (the image is a
 *   static PIE and runs wherever it was loaded), clear BSS, take CPU 0's stack, install the
 *   EL2 vectors, call Rust.
 * - Secondary entry (PSCI CPU_ON and spin-table alike): find our logical index from MPIDR in
 *   the table the primary published, turn on the MMU with the primary's settings, take our
 *   stack, call Rust.
 * - EL2 exception vectors: save a full trap frame and call Rust.
 */

.equ R_AARCH64_RELATIVE, 1027
/* Per-CPU boot stack size; must match `STACK_SIZE` in lib.rs and the linker script. */
.equ STACK_SIZE, 0x10000
.equ MPIDR_AFFINITY_MASK, 0xff00ffffff
/* CPTR_EL2 (non-VHE) with only its RES1 bits: FP/SIMD and SVE usable at EL2 (Rust code uses them). */
.equ CPTR_EL2_NO_TRAPS, 0x33ff
/* CPACR_EL1.FPEN = 0b11: FP/SIMD usable at EL1, for the wrong-EL path's Rust code. */
.equ CPACR_EL1_FPEN, (3 << 20)
/* Layout of `SecondaryBoot` in secondary.rs: mair, tcr, ttbr0, sctlr, count, mpidr[8]. */
.equ SB_MAIR, 0
.equ SB_TCR, 8
.equ SB_TTBR0, 16
.equ SB_SCTLR, 24
.equ SB_COUNT, 32
.equ SB_MPIDR, 40
/* Layout of `TrapFrame` in exceptions.rs. */
.equ TF_ELR, 248
.equ TF_SPSR, 256
.equ TF_ESR, 264
.equ TF_FAR, 272
.equ TF_SP, 280
/* FP/SIMD state: q0..q31 (512 bytes), then FPCR and FPSR. */
.equ TF_FP, 288
.equ TF_FPCR, 800
.equ TF_SIZE, 816

/* Load the PC-relative address of a symbol (the image is position independent). */
.macro adr_l reg, sym
    adrp \reg, \sym
    add \reg, \reg, :lo12:\sym
.endm

.section .text.head, "ax"
.global _start
_start:
    b       primary_entry               /* code0 */
    .long   0                           /* code1 */
    .quad   0x80000                     /* text_offset: the Raspberry Pi firmware stub lives below */
    .quad   __image_end - _start        /* image_size, BSS and stacks included */
    .quad   0xa                         /* flags: little endian, 4 KiB pages, anywhere in RAM */
    .quad   0                           /* res2 */
    .quad   0                           /* res3 */
    .quad   0                           /* res4 */
    .ascii  "ARM\x64"                   /* magic */
    .long   0                           /* res5 */

.section .text.boot, "ax"
primary_entry:
    mov     x19, x0                     /* device tree */
    mrs     x20, CurrentEL
    ubfx    x20, x20, #2, #2

    /* Relocate: *(base + r_offset) = base + r_addend for every RELATIVE entry. */
    adr_l   x21, _start
    adr_l   x2, __rela_start
    adr_l   x3, __rela_end
1:  cmp     x2, x3
    b.hs    2f
    ldp     x4, x5, [x2], #16
    ldr     x6, [x2], #8
    cmp     x5, #R_AARCH64_RELATIVE
    b.ne    1b                          /* a static PIE has no other kind */
    add     x6, x6, x21
    str     x6, [x21, x4]
    b       1b
2:
    /* Clear BSS (16-byte aligned by the linker script). */
    adr_l   x2, __bss_start
    adr_l   x3, __bss_end
3:  cmp     x2, x3
    b.hs    4f
    stp     xzr, xzr, [x2], #16
    b       3b
4:
    /* CPU 0's stack. */
    adr_l   x2, __stacks_start
    add     sp, x2, #STACK_SIZE

    cmp     x20, #2
    b.ne    wrong_el

    mov     x2, #CPTR_EL2_NO_TRAPS
    msr     cptr_el2, x2
    msr     tpidr_el2, xzr
    adr_l   x2, el2_vectors
    msr     vbar_el2, x2
    isb
    mov     x0, x19
    mov     x1, x21
    bl      companion_primary_main
    b       park

wrong_el:
    /* Any exception from here on (say, HLT without a semihosting host) parks the CPU. */
    adr_l   x2, park_vectors
    cmp     x20, #1
    b.ne    7f
    msr     vbar_el1, x2
    mov     x2, #CPACR_EL1_FPEN
    msr     cpacr_el1, x2
    b       8f
7:  cmp     x20, #3
    b.ne    8f
    msr     vbar_el3, x2
8:  isb
    mov     x0, x20
    mov     x1, x19
    bl      companion_wrong_exception_level
park:
    wfe
    b       park

.global secondary_entry
secondary_entry:
    mrs     x1, mpidr_el1
    mov     x2, #(MPIDR_AFFINITY_MASK & 0xffffffff)
    movk    x2, #(MPIDR_AFFINITY_MASK >> 32), lsl #32
    and     x1, x1, x2
    adr_l   x9, SECONDARY_BOOT
    ldr     x3, [x9, #SB_COUNT]
    mov     x4, #0
5:  cmp     x4, x3
    b.hs    park                        /* not a CPU we were asked to start */
    add     x5, x9, #SB_MPIDR
    ldr     x6, [x5, x4, lsl #3]
    cmp     x6, x1
    b.eq    6f
    add     x4, x4, #1
    b       5b
6:
    msr     tpidr_el2, x4
    mov     x2, #CPTR_EL2_NO_TRAPS
    msr     cptr_el2, x2
    adr_l   x2, el2_vectors
    msr     vbar_el2, x2

    /* The MMU, exactly as the primary set it up. */
    ldr     x2, [x9, #SB_MAIR]
    msr     mair_el2, x2
    ldr     x2, [x9, #SB_TCR]
    msr     tcr_el2, x2
    ldr     x2, [x9, #SB_TTBR0]
    msr     ttbr0_el2, x2
    isb
    tlbi    alle2
    dsb     nsh
    ic      iallu
    dsb     nsh
    isb
    ldr     x2, [x9, #SB_SCTLR]
    msr     sctlr_el2, x2
    isb

    /* Stack: __stacks_start + (index + 1) * __stack_size. */
    adr_l   x2, __stacks_start
    mov     x3, #STACK_SIZE
    add     x5, x4, #1
    madd    x2, x3, x5, x2
    mov     sp, x2
    mov     x0, x4
    bl      companion_secondary_main
    b       park

/* ---- Vectors for a core entered at the wrong EL: every exception parks the CPU ------- */

.macro PARK_VECTOR
    .balign 0x80
1:  wfe
    b       1b
.endm

.section .text.vectors, "ax"
.balign 0x800
park_vectors:
    .rept 16
    PARK_VECTOR
    .endr

/* ---- EL2 exception vectors ---------------------------------------------------------- */

/* Everything an interrupt must preserve: what the AAPCS64 lets the Rust handler clobber — the
 * caller-saved registers x0..x18 and x30 (the x0/x1 pair is stored by the vector), ELR/SPSR and
 * the whole FP/SIMD state (the upper halves of v8..v15 are not preserved by a call either). The
 * callee-saved x19..x29 need no saving for an interrupt: the handler preserves them, and a switch
 * to another context (`switch_context`) saves them itself, so an IRQ frame leaves them
 * unwritten. A synchronous exception's frame (SAVE_FRAME) is the guest's whole register file,
 * which its handlers read and write: it adds x19..x29, ESR_EL2, FAR_EL2 and the old SP. */
.macro SAVE_IRQ_FRAME
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    str     x18, [sp, #144]
    str     x30, [sp, #240]
    mrs     x1, elr_el2
    mrs     x2, spsr_el2
    stp     x1, x2, [sp, #TF_ELR]
    /* The core's Rust code may use FP/SIMD registers anywhere (copies, arithmetic): save the
     * interrupted context's whole FP state so no context's state is ever corrupted. */
    add     x1, sp, #TF_FP
    stp     q0, q1, [x1, #0]
    stp     q2, q3, [x1, #32]
    stp     q4, q5, [x1, #64]
    stp     q6, q7, [x1, #96]
    stp     q8, q9, [x1, #128]
    stp     q10, q11, [x1, #160]
    stp     q12, q13, [x1, #192]
    stp     q14, q15, [x1, #224]
    stp     q16, q17, [x1, #256]
    stp     q18, q19, [x1, #288]
    stp     q20, q21, [x1, #320]
    stp     q22, q23, [x1, #352]
    stp     q24, q25, [x1, #384]
    stp     q26, q27, [x1, #416]
    stp     q28, q29, [x1, #448]
    stp     q30, q31, [x1, #480]
    mrs     x2, fpcr
    mrs     x3, fpsr
    add     x1, x1, #(TF_FPCR - TF_FP)
    stp     x2, x3, [x1]
.endm

.macro SAVE_FRAME
    SAVE_IRQ_FRAME
    str     x19, [sp, #152]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, esr_el2
    mrs     x2, far_el2
    stp     x1, x2, [sp, #TF_ESR]
    add     x1, sp, #TF_SIZE
    str     x1, [sp, #TF_SP]
.endm

/* Restores what SAVE_IRQ_FRAME saved and returns. */
.macro RESTORE_IRQ_FRAME_AND_RETURN
    add     x1, sp, #TF_FP
    ldp     q0, q1, [x1, #0]
    ldp     q2, q3, [x1, #32]
    ldp     q4, q5, [x1, #64]
    ldp     q6, q7, [x1, #96]
    ldp     q8, q9, [x1, #128]
    ldp     q10, q11, [x1, #160]
    ldp     q12, q13, [x1, #192]
    ldp     q14, q15, [x1, #224]
    ldp     q16, q17, [x1, #256]
    ldp     q18, q19, [x1, #288]
    ldp     q20, q21, [x1, #320]
    ldp     q22, q23, [x1, #352]
    ldp     q24, q25, [x1, #384]
    ldp     q26, q27, [x1, #416]
    ldp     q28, q29, [x1, #448]
    ldp     q30, q31, [x1, #480]
    add     x1, x1, #(TF_FPCR - TF_FP)
    ldp     x2, x3, [x1]
    msr     fpcr, x2
    msr     fpsr, x3

    ldp     x1, x2, [sp, #TF_ELR]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldr     x18, [sp, #144]
    ldr     x30, [sp, #240]
    add     sp, sp, #TF_SIZE
    eret
.endm

/* Restores what SAVE_FRAME saved (the handler may have changed any of it) and returns. */
.macro RESTORE_FRAME_AND_RETURN
    ldr     x19, [sp, #152]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    RESTORE_IRQ_FRAME_AND_RETURN
.endm

.macro IRQ_VECTOR kind
    .balign 0x80
    sub     sp, sp, #TF_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       el2_irq_common
.endm

/* An IRQ taken at EL2 itself (an oob thread, the core's own in-band loop): no guest to look
 * after, so no vector kind and no frame to pass. */
.macro IRQ_VECTOR_CURRENT_EL
    .balign 0x80
    sub     sp, sp, #TF_SIZE
    stp     x0, x1, [sp, #0]
    b       el2_irq_current_el
.endm

.macro VECTOR kind
    .balign 0x80
    sub     sp, sp, #TF_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       el2_trap_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global el2_vectors
el2_vectors:
    /* Current EL with SP_EL0 */
    VECTOR 0
    IRQ_VECTOR_CURRENT_EL
    VECTOR 2
    VECTOR 3
    /* Current EL with SP_ELx */
    VECTOR 4
    IRQ_VECTOR_CURRENT_EL
    VECTOR 6
    VECTOR 7
    /* Lower EL, AArch64 */
    VECTOR 8
    IRQ_VECTOR 9
    VECTOR 10
    VECTOR 11
    /* Lower EL, AArch32 */
    VECTOR 12
    IRQ_VECTOR 13
    VECTOR 14
    VECTOR 15

el2_trap_common:
    SAVE_FRAME
    mov     x1, x0
    mov     x0, sp
    bl      el2_trap
    RESTORE_FRAME_AND_RETURN

/* IRQs take a shorter way: straight to the image's interrupt entry, no handler lookup. */
el2_irq_common:
    SAVE_IRQ_FRAME
    mov     x1, x0
    mov     x0, sp
    bl      companion_irq_entry
    RESTORE_IRQ_FRAME_AND_RETURN

/* The oob wake-up's path: straight to the interrupt handling, nothing to route. */
el2_irq_current_el:
    SAVE_IRQ_FRAME
    bl      companion_irq_current_el
    RESTORE_IRQ_FRAME_AND_RETURN
