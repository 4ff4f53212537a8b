//! The conformance suite again, through `Box<dyn Log>` and a factory that keeps state
//! between calls (as a file log's factory does with its temporary directory).

use flume_core::Log;
use flumelog_memory::MemoryLog;

flume_core::log_conformance_tests!(boxed_dyn_log => {
    let mut made = 0usize;
    move || {
        made += 1;
        let log: Box<dyn Log> = Box::new(MemoryLog::with_capacity(made * 16));
        async move { log }
    }
});
