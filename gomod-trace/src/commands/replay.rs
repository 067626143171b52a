//! `gomod-trace replay`: recorded events in, timeline out, through the same
//! correlator as a live run.
use super::{Console, EXIT_TRACER_ERROR, write_timeline};
use crate::{cli::ReplayArgs, correlate::Correlator, record};

pub fn replay(args: &ReplayArgs) -> i32 {
    if let Err(e) = super::check_output(&args.output, Console::Stdout) {
        eprintln!("gomod-trace: {e}");
        return EXIT_TRACER_ERROR;
    }
    let events = match record::read(&args.events) {
        Ok(events) => events,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            return EXIT_TRACER_ERROR;
        }
    };
    let timeline = Correlator::timeline(events, args.judge.settings());
    match write_timeline(&timeline, &args.output, Console::Stdout) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gomod-trace: {e}");
            EXIT_TRACER_ERROR
        }
    }
}
