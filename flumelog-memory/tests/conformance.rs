//! The shared log conformance suite (`flume_core::testing`) run against `MemoryLog`.

flume_core::log_conformance_tests!(|| async { flumelog_memory::MemoryLog::new() });
