(module
  (memory (export "memory") 6)
  ;; LF -> CRLF for input that holds no CR: every LF gets a CR in front.
  ;; Input at $in (length $len), output at $out; returns the output length.
  (func (export "lfToCrlf") (param $in i32) (param $len i32) (param $out i32) (result i32)
    (local $i i32) (local $o i32) (local $v i64) (local $t i64) (local $b i32)
    (local.set $o (local.get $out))
    (block $wideDone
      (loop $wide
        (br_if $wideDone (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $len)))
        (local.set $v (i64.load (i32.add (local.get $in) (local.get $i))))
        (local.set $t (i64.xor (local.get $v) (i64.const 0x0a0a0a0a0a0a0a0a)))
        (if (i64.eqz
              (i64.and
                (i64.and (i64.sub (local.get $t) (i64.const 0x0101010101010101))
                         (i64.xor (local.get $t) (i64.const -1)))
                (i64.const 0x8080808080808080)))
          (then
            (i64.store (local.get $o) (local.get $v))
            (local.set $o (i32.add (local.get $o) (i32.const 8)))
            (local.set $i (i32.add (local.get $i) (i32.const 8)))
            (br $wide)))
        ;; An LF among these 8 bytes: copy up to and including it byte by byte.
        (block $lineDone
          (loop $bytes
            (local.set $b (i32.load8_u (i32.add (local.get $in) (local.get $i))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (if (i32.eq (local.get $b) (i32.const 10))
              (then
                (i32.store16 (local.get $o) (i32.const 0x0a0d))
                (local.set $o (i32.add (local.get $o) (i32.const 2)))
                (br $lineDone)))
            (i32.store8 (local.get $o) (local.get $b))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))
            (br $bytes)))
        (br $wide)))
    (block $tailDone
      (loop $tail
        (br_if $tailDone (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u (i32.add (local.get $in) (local.get $i))))
        (if (i32.eq (local.get $b) (i32.const 10))
          (then
            (i32.store8 (local.get $o) (i32.const 13))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))))
        (i32.store8 (local.get $o) (local.get $b))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $tail)))
    (i32.sub (local.get $o) (local.get $out))))
