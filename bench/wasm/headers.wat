;; The wasm-headers bench filter: the work of the nginx peer's lua-headers server, as a bare Proxy-Wasm 0.2.1 module.
;; Reads the request's user-agent, adds "x-lua: 1" to the request and "x-filtered: wasm" to the response.
;; Hand-written rather than SDK-built, so the scenario measures weir's Proxy-Wasm host and not an SDK's own logging.
(module
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "user-agent")
  (data (i32.const 32) "x-lua")
  (data (i32.const 40) "1")
  (data (i32.const 48) "x-filtered")
  (data (i32.const 64) "wasm")
  ;; 128 and 132 receive the pointer and size of a value the host returns.
  ;; Values the host hands over go to a bump heap from 1024, reset at each request: nothing outlives a callback.
  (global $heap (mut i32) (i32.const 1024))

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $ptr) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.lt_s
              (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16))) (i32.const 16)) (i32.const 1)))
              (i32.const 0))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (i32.const 1024))
    ;; map 0: request headers
    (drop (call $get_header (i32.const 0) (i32.const 16) (i32.const 10) (i32.const 128) (i32.const 132)))
    (drop (call $add_header (i32.const 0) (i32.const 32) (i32.const 5) (i32.const 40) (i32.const 1)))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    ;; map 2: response headers
    (drop (call $add_header (i32.const 2) (i32.const 48) (i32.const 10) (i32.const 64) (i32.const 4)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
