;; Sends an http call to the cluster "collector" from proxy_on_log, once its request has ended (a fire-and-forget
;; log shipper), and logs "answered" from proxy_on_http_call_response: the answer must come, through the root
;; context, although the stream that made the call is gone (Envoy attaches callouts to the root context).
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "collector")
  (data (i32.const 120) "answered")
  (data (i32.const 140) "log line")
  (data (i32.const 160) "call refused")
  ;; The request headers as serialized pairs: :method POST, :path /collect, :authority collector (77 bytes).
  (data (i32.const 200) "\03\00\00\00\07\00\00\00\04\00\00\00\05\00\00\00\08\00\00\00\0a\00\00\00\09\00\00\00:method\00POST\00:path\00/collect\00:authority\00collector\00")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param $ctx i32)
    (if (call $http_call (i32.const 100) (i32.const 9) (i32.const 200) (i32.const 77) (i32.const 140) (i32.const 8)
          (i32.const 0) (i32.const 0) (i32.const 2000) (i32.const 1000))
      (then (drop (call $log (i32.const 4) (i32.const 160) (i32.const 12))))))
  (func (export "proxy_on_http_call_response") (param $root i32) (param $token i32) (param i32 i32 i32)
    (drop (call $log (i32.const 2) (i32.const 120) (i32.const 8)))))
