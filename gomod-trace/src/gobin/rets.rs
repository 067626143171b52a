//! Where a Go function's probes go: after its prologue's stack check (see
//! [`after_stack_check`]), and where it returns: the address of every RET in its body, for the
//! return probes (a uretprobe would overwrite the return address, which Go's
//! moving stacks do not tolerate). The body is decoded linearly from its entry
//! to the next function's entry: Go puts no data in its text (jump tables live
//! in read-only data), so every byte belongs to an instruction; the morestack
//! call and the alignment padding after the last RET decode as instructions too.
//! A byte sequence that does not decode means the range is wrong, and a probe
//! placed by a wrong decoding would corrupt the program: that is an error.

use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic};

use super::NotTraceable;

/// Addresses of the RET instructions in `code`, which starts at `start`.
pub(crate) fn returns(code: &[u8], start: u64) -> Result<Vec<u64>, NotTraceable> {
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut rets = Vec::new();
    for instruction in &mut decoder {
        if instruction.code() == Code::INVALID {
            return Err(NotTraceable::Malformed(format!(
                "undecodable instruction at {:#x}",
                instruction.ip()
            )));
        }
        if instruction.mnemonic() == Mnemonic::Ret {
            rets.push(instruction.ip());
        }
    }
    Ok(rets)
}

/// The address of the instruction that follows a Go prologue's stack check
/// (`cmp rsp, [r14+0x10]` or `lea r12, [rsp-N]; cmp r12, [r14+0x10]`, then a
/// conditional jump to the morestack call), if the function starts that way:
/// `push rbp` since Go 1.21 (an instruction the kernel emulates), `sub rsp, N`
/// before. Registers still hold the arguments there.
pub(crate) fn after_stack_check(code: &[u8], start: u64) -> Option<u64> {
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    for _ in 0..3 {
        let instruction = decoder.decode();
        match instruction.mnemonic() {
            Mnemonic::Lea | Mnemonic::Cmp => {}
            Mnemonic::Jbe | Mnemonic::Jb | Mnemonic::Jae | Mnemonic::Ja => {
                let next = decoder.decode();
                return (next.code() != Code::INVALID).then_some(next.ip());
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_probe_goes_after_the_stack_check() {
        let small = [
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x76, 0x20, // jbe morestack
            0x55, // push rbp
            0x48, 0x89, 0xe5, // mov rbp, rsp
        ];
        assert_eq!(after_stack_check(&small, 0x1000), Some(0x1006));
        let large = [
            0x4c, 0x8d, 0xa4, 0x24, 0xa8, 0xfe, 0xff, 0xff, // lea r12, [rsp-0x158]
            0x4d, 0x3b, 0x66, 0x10, // cmp r12, [r14+0x10]
            0x0f, 0x86, 0x99, 0x10, 0x00, 0x00, // jbe morestack
            0x55, // push rbp
        ];
        assert_eq!(after_stack_check(&large, 0x2000), Some(0x2012));
        // Go 1.19: the frame is made with `sub rsp, N` after the check.
        let sub = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x48, 0x83, 0xec, 0x18];
        assert_eq!(after_stack_check(&sub, 0x3000), Some(0x3006));
        // Anything else first (a function without a stack check): no such place.
        assert_eq!(after_stack_check(&[0x48, 0x89, 0xe5, 0x55], 0), None);
        assert_eq!(after_stack_check(&[0x49, 0x3b, 0x66, 0x10], 0), None);
        assert_eq!(after_stack_check(&[], 0), None);
    }

    #[test]
    fn finds_rets_between_instructions() {
        let code = [
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x76, 0x08, // jbe morestack
            0x48, 0x83, 0xec, 0x18, // sub rsp, 0x18
            0xc3, // ret
            0xb8, 0xc3, 0, 0, 0,    // mov eax, 0xc3 (a C3 byte that is not a RET)
            0xc3, // ret
            0xe8, 0, 0, 0, 0, // call morestack
            0xeb, 0xe9, // jmp entry
            0xcc, 0xcc, // int3 padding
        ];
        assert_eq!(returns(&code, 0x1000).unwrap(), vec![0x100a, 0x1010]);
    }

    #[test]
    fn ret_with_immediate_counts() {
        assert_eq!(returns(&[0xc2, 0x08, 0x00], 0x10).unwrap(), vec![0x10]);
    }

    #[test]
    fn undecodable_bytes_are_an_error() {
        // 0x06 (push es) does not exist in 64-bit mode.
        assert!(matches!(
            returns(&[0x90, 0x06], 0),
            Err(NotTraceable::Malformed(_))
        ));
        // An instruction cut short by the end of the range.
        assert!(matches!(
            returns(&[0xb8, 0x01], 0),
            Err(NotTraceable::Malformed(_))
        ));
    }

    #[test]
    fn empty_body_has_no_returns() {
        assert!(returns(&[], 0).unwrap().is_empty());
    }
}
