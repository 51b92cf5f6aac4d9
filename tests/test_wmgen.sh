#!/usr/bin/env bash
# wmgen end to end on the tiny model: a multi-block session for every variant; the dumps exist
# with the documented names; feeding the dumped noise back (--noise) reproduces the latents bit for
# bit, and another seed's noise reproduces that seed's latents (so the override is really used);
# an action script from engine/ACTIONS.md runs; bad arguments fail with a message.
set -u
WMGEN=$1
SRC=$2
TMP=$(mktemp -d /tmp/wm-test-wmgen-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
check() { # check "description" command...
    local what=$1; shift
    if "$@" >"$TMP/log" 2>&1; then echo "ok   $what"; else echo "FAIL $what"; sed 's/^/     /' "$TMP/log" | tail -5; fails=$((fails + 1)); fi
}
has_tensor() { grep -a -q "\"$2\"" "$1"; }

for v in universal gta_drive templerun; do
    check "$v: 3-block session" "$WMGEN" --model synthetic:tiny --variant "$v" --blocks 3 --seed 5 \
        --out "$TMP/$v" --dump-noise --dump-forwards --dump-hidden 1:0
    check "$v: latents, per-block x0 and every forward dumped" has_tensor "$TMP/$v/latents.safetensors" b2.x0
    steps=3; [ "$v" = templerun ] && steps=4
    check "$v: context pass is forward $steps" has_tensor "$TMP/$v/forwards.safetensors" "b2.s$steps.v"
    check "$v: hidden states of block 1 step 0, last layer" has_tensor "$TMP/$v/hidden.safetensors" b1.s0.layer2
    check "$v: re-noising draw dumped" has_tensor "$TMP/$v/noise.safetensors" "b2.noise$((steps - 1))"
    check "$v: --noise with the dumped noise reproduces the latents bit for bit" \
        bash -c "'$WMGEN' --model synthetic:tiny --variant $v --blocks 3 --seed 99 --quiet \
                 --noise '$TMP/$v/noise.safetensors' --out '$TMP/$v-replay' &&
                 cmp '$TMP/$v/latents.safetensors' '$TMP/$v-replay/latents.safetensors'"
done
check "another seed differs" bash -c "'$WMGEN' --model synthetic:tiny --blocks 3 --seed 6 --quiet --out '$TMP/s6' &&
    ! cmp -s '$TMP/universal/latents.safetensors' '$TMP/s6/latents.safetensors'"
check "a script from ACTIONS.md runs (templerun)" bash -c "
    awk '/^\`\`\`json/{f=1;n++;next} /^\`\`\`/{f=0} f && n==4' '$SRC/engine/ACTIONS.md' > '$TMP/script.json' &&
    grep -q templerun '$TMP/script.json' &&
    '$WMGEN' --model synthetic:tiny --variant templerun --actions '$TMP/script.json' --blocks 2 --quiet --out '$TMP/scripted'"
check "the README example script runs" "$WMGEN" --model synthetic:tiny --actions "$SRC/engine/examples/forward.json" --blocks 3 --quiet --out "$TMP/example"
# issue 3: a PNG and an action script become frames and a video
check "start image + action script -> PNG frames (9 + 12 + 12)" bash -c "
    '$WMGEN' --model synthetic:tiny --image '$SRC/tests/fixtures/start.png' --actions '$SRC/engine/examples/forward.json' \
        --blocks 3 --quiet --out '$TMP/img' && test \$(ls '$TMP/img/frames' | wc -l) -eq 33 && test -s '$TMP/img/frames/frame_000032.png'"
if command -v ffmpeg >/dev/null; then
    check "... and an MP4" test -s "$TMP/img/video.mp4"
else
    echo "skip MP4 check: no ffmpeg program"
fi
check "same image, same seed: identical latents" bash -c "
    '$WMGEN' --model synthetic:tiny --image '$SRC/tests/fixtures/start.png' --actions '$SRC/engine/examples/forward.json' \
        --blocks 3 --quiet --no-frames --out '$TMP/img2' && cmp '$TMP/img/latents.safetensors' '$TMP/img2/latents.safetensors'"
check "a truncated PNG is refused by name" bash -c "head -c 100 '$SRC/tests/fixtures/start.png' > '$TMP/bad.png';
    '$WMGEN' --model synthetic:tiny --image '$TMP/bad.png' --out '$TMP/bad' 2>&1 | grep -q 'bad.png'"
check "missing --out is refused with exit code 2" bash -c "'$WMGEN' --model synthetic:tiny; test \$? -eq 2"
check "unknown variant is refused with a message" bash -c "'$WMGEN' --model synthetic:tiny --variant nope --out '$TMP/x' 2>&1 | grep -q 'unknown variant'"
check "missing noise tensor is refused by name" bash -c "'$WMGEN' --model synthetic:tiny --blocks 4 --quiet \
    --noise '$TMP/universal/noise.safetensors' --out '$TMP/y' 2>&1 | grep -q \"no tensor 'b3.noise0'\""
check "--help documents every flag" bash -c "'$WMGEN' --help | grep -q -- --dump-hidden"
echo "test_wmgen: $fails failed"
exit $((fails > 0))
