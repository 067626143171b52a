//! Where a Go function returns: the address of every RET in its body, for the
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

#[cfg(test)]
mod tests {
    use super::*;

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
