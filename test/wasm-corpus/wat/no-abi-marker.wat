;; Exports callbacks but no proxy_abi_version_* marker: loading must fail.
(module
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32)))
