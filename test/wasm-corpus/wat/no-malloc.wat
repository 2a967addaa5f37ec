;; Has a marker but neither malloc nor proxy_on_memory_allocate: loading must fail.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32)))
