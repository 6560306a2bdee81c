#!/usr/bin/env bash
# An Nsight Compute summary of every kernel family in one device call (issue 5: "an ncu summary of each
# kernel"): bench/profile_ncu.py over the table below, one layer pass per family, default kernels first, then
# the opt-in ones (GPUCONV_UNVERIFIED) and cuDNN's for the same passes. Each entry writes its own folder
# (OUTDIR/<label>/ncu_*.{md,csv}); OUTDIR/ncu_summary.md concatenates the per-kernel tables. No entry starts
# after NCU_DEADLINE seconds (default 540), so the call ends inside the device tool's 600 s.
#
#   bash bench/ncu_suite.sh OUTDIR [LABEL_REGEX]        (LABEL_REGEX: only the entries whose label matches)
set -u
out=$1 only=${2:-.}
deadline=${NCU_DEADLINE:-540}
mkdir -p "$out"
start=$(date +%s)

# label | environment (or -) | profile_ncu.py arguments
table() {
cat <<'EOF'
direct-fprop-f32|-|--layer resnet50_l1_3x3 --pass fprop --algo direct --batch 4
direct-wgrad-f32|-|--layer resnet50_l1_3x3 --pass wgrad --algo direct --batch 4
im2col-fprop-f32|-|--layer vgg16_conv4_2 --pass fprop --algo im2col
im2col-dgrad-f32|-|--layer vgg16_conv4_2 --pass dgrad --algo im2col
igemm-simt-fprop-f32|-|--layer resnet50_l1_3x3 --pass fprop --algo implicit_gemm
igemm-simt-dgrad-f32|-|--layer resnet50_l1_3x3 --pass dgrad --algo implicit_gemm
igemm-simt-wgrad-f32|-|--layer resnet50_l1_3x3 --pass wgrad --algo implicit_gemm
igemm-simt-dgrad-s2-f32|-|--layer resnet50_l2_3x3s2 --pass dgrad --algo implicit_gemm
igemm-tf32-fprop|GPUCONV_ALLOW_TF32=1|--layer resnet50_l1_3x3 --pass fprop --algo implicit_gemm
igemm-mma-fprop-f16|-|--layer resnet50_l1_3x3 --pass fprop --dtype float16 --algo implicit_gemm
igemm-mma-dgrad-f16|-|--layer resnet50_l1_3x3 --pass dgrad --dtype float16 --algo implicit_gemm
igemm-mma-wgrad-f16|-|--layer resnet50_l1_3x3 --pass wgrad --dtype float16 --algo implicit_gemm
depthwise-fprop-f32|-|--layer mobilenetv2_dw_s1 --pass fprop --algo depthwise
depthwise-dgrad-f32|-|--layer mobilenetv2_dw_s1 --pass dgrad --algo depthwise
depthwise-wgrad-f32|-|--layer mobilenetv2_dw_s1 --pass wgrad --algo depthwise
maxpool-fwd-f32|-|--layer resnet50_maxpool --pass fwd
maxpool-bwd-f32|-|--layer resnet50_maxpool --pass bwd
avgpool-fwd-f32|-|--layer densenet121_avgpool --pass fwd
avgpool-bwd-f32|-|--layer densenet121_avgpool --pass bwd
new-igemm_nhwc-fprop-f16|GPUCONV_UNVERIFIED=igemm_nhwc|--layer vgg16_conv1_2 --pass fprop --dtype float16 --algo implicit_gemm
new-nhwc_wgrad-f16|GPUCONV_UNVERIFIED=nhwc_wgrad|--layer vgg16_conv4_2 --pass wgrad --dtype float16 --algo implicit_gemm
new-nhwc_dgrad-s2-f16|GPUCONV_UNVERIFIED=nhwc_dgrad|--layer resnet50_l2_3x3s2 --pass dgrad --dtype float16 --algo implicit_gemm
new-depthwise_v2-fprop-f32|GPUCONV_UNVERIFIED=depthwise_v2|--layer mobilenetv2_dw_s1 --pass fprop --algo depthwise
new-depthwise_v2-dgrad-f32|GPUCONV_UNVERIFIED=depthwise_v2|--layer mobilenetv2_dw_s1 --pass dgrad --algo depthwise
new-depthwise_v2-wgrad-f32|GPUCONV_UNVERIFIED=depthwise_v2|--layer mobilenetv2_dw_s1 --pass wgrad --algo depthwise
new-pool_wide-maxfwd-f32|GPUCONV_UNVERIFIED=pool_wide|--layer resnet50_maxpool --pass fwd
new-pool_wide-maxbwd-f32|GPUCONV_UNVERIFIED=pool_wide|--layer resnet50_maxpool --pass bwd
new-pool_wide-avgfwd-f32|GPUCONV_UNVERIFIED=pool_wide|--layer densenet121_avgpool --pass fwd
new-pool_wide-avgbwd-f32|GPUCONV_UNVERIFIED=pool_wide|--layer densenet121_avgpool --pass bwd
new-gemm_1x1-fprop-f16|GPUCONV_UNVERIFIED=gemm_1x1|--layer resnet50_l1_1x1_expand --pass fprop --dtype float16 --algo im2col
cudnn-fprop-f32|-|--layer resnet50_l1_3x3 --pass fprop --impl torch
cudnn-wgrad-f32|-|--layer resnet50_l1_3x3 --pass wgrad --impl torch
cudnn-fprop-f16|-|--layer resnet50_l1_3x3 --pass fprop --dtype float16 --impl torch
cudnn-depthwise-fprop-f32|-|--layer mobilenetv2_dw_s1 --pass fprop --impl torch
cudnn-maxpool-bwd-f32|-|--layer resnet50_maxpool --pass bwd --impl torch
EOF
}

here=$(cd "$(dirname "$0")/.." && pwd)
summary="$out/ncu_summary.md"
echo "# Nsight Compute, one pass per kernel family (bench/ncu_suite.sh)" > "$summary"
table | while IFS='|' read -r label envs args; do
    [[ "$label" =~ $only ]] || continue
    if (( $(date +%s) - start > deadline )); then
        echo "== $label SKIPPED (past ${deadline}s)"; echo -e "\n## $label: SKIPPED (deadline)" >> "$summary"; continue
    fi
    dir="$out/$label"
    t0=$(date +%s)
    # shellcheck disable=SC2086  # args and envs are word lists on purpose
    (cd "$here" && env -u GPUCONV_UNVERIFIED -u GPUCONV_ALLOW_TF32 $([ "$envs" = - ] || echo "$envs") \
        python3 bench/profile_ncu.py $args --out "$dir" > "$out/$label.log" 2>&1)
    rc=$?
    echo "== $label ($envs) rc=$rc $(( $(date +%s) - t0 ))s"
    {
        echo -e "\n## $label ($envs): profile_ncu.py $args"
        if [ $rc -eq 0 ]; then cat "$dir"/ncu_*.md; else echo "FAILED rc=$rc; last lines:"; tail -n 5 "$out/$label.log"; fi
    } >> "$summary"
done
echo "summary: $summary"
