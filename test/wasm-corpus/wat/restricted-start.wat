;; Calls a restricted host function from its start function: the VM must fail to start (restricted_callback),
;; while proxy_log is allowed there.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "starting")
  (func $start
    (drop (call $log (i32.const 2) (i32.const 1024) (i32.const 8)))
    (drop (call $tick (i32.const 10))))
  (start $start)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 2048))
  (func (export "proxy_on_context_create") (param i32 i32)))
