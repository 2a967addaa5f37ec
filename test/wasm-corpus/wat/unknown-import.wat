;; Imports a host function that no Proxy-Wasm host provides: loading must fail and name it.
(module
  (import "env" "proxy_frobnicate" (func $f (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32) (drop (call $f (local.get 0)))))
