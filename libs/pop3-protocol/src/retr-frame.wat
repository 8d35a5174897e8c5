(module
  ;; The memory comes from JavaScript (retr-frame.ts sizes it and never grows it).
  (import "env" "memory" (memory 1))
  ;; A chunk of a stored message as a RETR body, in one pass: canonical line ends (a CR before
  ;; every LF that has none), a `.` in front of every line that starts with one and, when $last
  ;; is set, a CRLF when the message does not end with a line end, then the terminating ".\r\n".
  ;; Input at $in (length $len); the byte before it is the message's previous byte (an LF before
  ;; the first chunk), and 32 more past its end are readable. Output at $out (room for
  ;; 2 * $len + 5 octets and 16 more). Returns the output length and stores the number of dots
  ;; added at address 0.
  ;; 16 bytes at a time: the LFs of a block come from one SIMD compare, and the bytes between two
  ;; of them are copied with one 16-byte load and store.
  (func (export "frame") (param $in i32) (param $len i32) (param $out i32) (param $last i32) (result i32)
    (local $i i32) (local $o i32) (local $mask i32) (local $start i32) (local $q i32)
    (local $dots i32) (local $b i32)
    (local.set $o (local.get $out))
    ;; A dot at the start of the chunk, when a line starts there.
    (if (i32.and (i32.gt_u (local.get $len) (i32.const 0))
                 (i32.eq (i32.load8_u (i32.sub (local.get $in) (i32.const 1))) (i32.const 10)))
      (then
        (if (i32.eq (i32.load8_u (local.get $in)) (i32.const 46))
          (then
            (i32.store8 (local.get $o) (i32.const 46))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))
            (local.set $dots (i32.const 1))))))
    (block $blocksDone
      (loop $blocks
        (br_if $blocksDone (i32.gt_u (i32.add (local.get $i) (i32.const 16)) (local.get $len)))
        (local.set $mask
          (i8x16.bitmask
            (i8x16.eq (v128.load (i32.add (local.get $in) (local.get $i))) (i8x16.splat (i32.const 10)))))
        ;; $start: the next input byte to copy (absolute).
        (local.set $start (local.get $i))
        (block $lfsDone
          (loop $lfs
            (br_if $lfsDone (i32.eqz (local.get $mask)))
            (local.set $q (i32.add (local.get $i) (i32.ctz (local.get $mask))))
            ;; [start, q) is shorter than 16 bytes: one store covers it.
            (v128.store (local.get $o) (v128.load (i32.add (local.get $in) (local.get $start))))
            (local.set $o (i32.add (local.get $o) (i32.sub (local.get $q) (local.get $start))))
            (if (i32.ne (i32.load8_u (i32.sub (i32.add (local.get $in) (local.get $q)) (i32.const 1))) (i32.const 13))
              (then
                (i32.store8 (local.get $o) (i32.const 13))
                (local.set $o (i32.add (local.get $o) (i32.const 1)))))
            (i32.store8 (local.get $o) (i32.const 10))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))
            (local.set $start (i32.add (local.get $q) (i32.const 1)))
            (if (i32.lt_u (local.get $start) (local.get $len))
              (then
                (if (i32.eq (i32.load8_u (i32.add (local.get $in) (local.get $start))) (i32.const 46))
                  (then
                    (i32.store8 (local.get $o) (i32.const 46))
                    (local.set $o (i32.add (local.get $o) (i32.const 1)))
                    (local.set $dots (i32.add (local.get $dots) (i32.const 1)))))))
            (local.set $mask (i32.and (local.get $mask) (i32.sub (local.get $mask) (i32.const 1))))
            (br $lfs)))
        ;; The rest of the block, [start, i + 16).
        (v128.store (local.get $o) (v128.load (i32.add (local.get $in) (local.get $start))))
        (local.set $o (i32.add (local.get $o) (i32.sub (i32.add (local.get $i) (i32.const 16)) (local.get $start))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $blocks)))
    ;; The last bytes, one at a time.
    (block $tailDone
      (loop $tail
        (br_if $tailDone (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u (i32.add (local.get $in) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (i32.eq (local.get $b) (i32.const 10))
          (then
            (if (i32.ne (i32.load8_u (i32.sub (i32.add (local.get $in) (local.get $i)) (i32.const 2))) (i32.const 13))
              (then
                (i32.store8 (local.get $o) (i32.const 13))
                (local.set $o (i32.add (local.get $o) (i32.const 1)))))
            (i32.store8 (local.get $o) (i32.const 10))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))
            (if (i32.lt_u (local.get $i) (local.get $len))
              (then
                (if (i32.eq (i32.load8_u (i32.add (local.get $in) (local.get $i))) (i32.const 46))
                  (then
                    (i32.store8 (local.get $o) (i32.const 46))
                    (local.set $o (i32.add (local.get $o) (i32.const 1)))
                    (local.set $dots (i32.add (local.get $dots) (i32.const 1)))))))
            (br $tail)))
        (i32.store8 (local.get $o) (local.get $b))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (br $tail)))
    (if (local.get $last)
      (then
        ;; A message that does not end with a line end gets one (as the canonical form has); the
        ;; byte before an empty last chunk is the previous chunk's last (an LF for an empty message).
        (if (i32.ne (i32.load8_u (i32.sub (i32.add (local.get $in) (local.get $len)) (i32.const 1))) (i32.const 10))
          (then
            (i32.store16 (local.get $o) (i32.const 0x0a0d))
            (local.set $o (i32.add (local.get $o) (i32.const 2)))))
        ;; ".\r\n"
        (i32.store16 (local.get $o) (i32.const 0x0d2e))
        (i32.store8 (i32.add (local.get $o) (i32.const 2)) (i32.const 10))
        (local.set $o (i32.add (local.get $o) (i32.const 3)))))
    (i32.store (i32.const 0) (local.get $dots))
    (i32.sub (local.get $o) (local.get $out))))
