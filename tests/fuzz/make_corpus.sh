#!/usr/bin/env bash
# Writes the small seed corpus for the safetensors fuzz target into corpus/safetensors/: two valid
# files that reach the conversion paths and two that fail late checks (overlap, size mismatch), so
# mutations start close to every branch of the reader. Files end in .bin because the repository
# ignores *.safetensors outside tests/fixtures. Rerun after changing it; the output is committed.
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)/corpus/safetensors"
mkdir -p "$out"

# Little-endian u64 as printf octal escapes.
le64() {
    local n=$1 s="" i
    for i in 0 1 2 3 4 5 6 7; do
        s+=$(printf '\\%03o' $((n & 255)))
        n=$((n >> 8))
    done
    printf '%s' "$s"
}

# write_st FILE HEADER DATA: DATA is a printf format of escapes (no %).
write_st() {
    local file=$1 hdr=$2 data=$3
    # Pad with spaces so the data starts 8-aligned, as our writer does.
    while (( (8 + ${#hdr}) % 8 != 0 )); do hdr+=" "; done
    {
        printf "$(le64 ${#hdr})"
        printf '%s' "$hdr"
        printf "$data"
    } > "$out/$file"
}

one_f32='\000\000\200\077'      # 1.0f
half='\000\074\001\000\377\173' # f16 1.0, smallest subnormal, 65504

write_st valid_f32_f16.bin \
    '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"h":{"dtype":"F16","shape":[3],"data_offsets":[16,22]}}' \
    "${one_f32}${one_f32}${one_f32}${one_f32}${half}"

write_st valid_bf16_scalar_gap.bin \
    '{"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"u":{"dtype":"U8","shape":[3],"data_offsets":[4,7]},"e":{"dtype":"F32","shape":[0,4],"data_offsets":[7,7]}}' \
    '\200\077\000\000\001\002\003'

write_st invalid_overlap.bin \
    '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}' \
    "${one_f32}${one_f32}${one_f32}"

write_st invalid_size_mismatch.bin \
    '{"blocks.0.q.weight":{"dtype":"F32","shape":[5,6],"data_offsets":[0,16]}}' \
    "${one_f32}${one_f32}${one_f32}${one_f32}"

ls -l "$out"
