// Fused CPU integration of one RGB-D frame into the block-sparse semantic TSDF volume, and marching cubes over it.
//
// The torch implementations (TorchFusion in fusion_backends.py, the torch path of meshing.py) are the reference; these
// functions do the same arithmetic in one pass each instead of ~100 small tensor operations:
//
//   band_block_keys: valid depth pixels -> sorted unique keys of the blocks within truncation of the
//                    surface (TorchFusion.band_block_keys).
//   lookup_slots:    block keys -> storage slots (BlockIndex.lookup).
//   fuse_voxels:     projective TSDF / weight / color / semantic / feature update of every voxel of the
//                    given blocks (TorchFusion.fuse_voxels).
//   mesh_cubes:      marching cubes' triangles and shared vertices of the cubes of some blocks (meshing._march).
//
// Work is split over torch.get_num_threads() threads by parallel_chunks (below), not by OpenMP: waiting
// OpenMP threads spin, which on a busy machine takes the CPU from the thread doing the work.
//
// Every float32 operation is the one the torch path does, in the same order, and the file is compiled
// with -ffp-contract=off (no fused multiply-add), so both paths pick the same blocks and pixels and
// compute the same values (only the sum over class votes may differ in its last bits). It is also compiled
// with -fno-trapping-math, which lets g++ vectorize loops that compute every voxel and select what to store.
//
// Layout (see block_grid.py): voxel l of the block in slot s is element s * V + l of every layer;
// block keys pack (x, y, z) block coordinates with 21 bits per axis (block_index.py).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>  // (not torch/extension.h: a third of the compile time)

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

constexpr int kCoordBits = 21;
constexpr int64_t kCoordOffset = int64_t{1} << (kCoordBits - 1);

int64_t pack_key(int64_t x, int64_t y, int64_t z) {
  return ((x + kCoordOffset) << (2 * kCoordBits)) | ((y + kCoordOffset) << kCoordBits) | (z + kCoordOffset);
}

bool depth_is_valid(float d, float min_depth, float max_depth) {
  return (d >= min_depth) & (d <= max_depth) & (d > 0.0f);  // false for NaN; no branches, so loops vectorize
}

void check_float_matrix(const at::Tensor& t, const char* name, int64_t dim, int64_t last) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.dim() == dim &&
                  (last < 0 || t.size(dim - 1) == last),
              name, " must be a contiguous float32 CPU tensor with ", dim, " dims (last one ", last,
              " unless negative), got ", t.scalar_type(), " ", t.sizes());
}

float* layer_data(const at::Tensor& t, const char* name, int64_t per_slot) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), "layer ", name,
              " must be a contiguous float32 CPU tensor");
  TORCH_CHECK(t.dim() >= 1 && (t.size(0) == 0 || t.numel() / t.size(0) == per_slot), "layer ", name, " holds ",
              t.numel() / std::max<int64_t>(t.size(0), 1), " values per block, expected ", per_slot);
  return t.data_ptr<float>();
}

// Runs body(begin, end) over [0, n) in chunks of `grain` items, on this thread and on up to
// at::get_num_threads() - 1 helper tasks of torch's inter-op thread pool. Chunks are claimed from a shared
// counter, so a helper that the OS schedules late (a busy machine) finds nothing left to do instead of
// holding everyone up, as a thread of a fork-join region (at::parallel_for) does at its closing barrier.
template <typename Body>
void parallel_chunks(int64_t n, int64_t grain, const Body& body) {
  const int64_t chunks = (n + grain - 1) / grain;
  const int64_t helpers = std::min<int64_t>(at::get_num_threads() - 1, chunks - 1);
  if (helpers <= 0) {
    if (n > 0) body(0, n);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0};
    int64_t finished = 0;  // guarded by mutex
    std::exception_ptr error;
    std::mutex mutex;
    std::condition_variable all_finished;
  };
  auto shared = std::make_shared<Shared>();
  // `body` is only touched after claiming a chunk, and no chunk can be claimed after the last one
  // finished, which is what this function waits for: a late helper never uses a dead reference.
  auto work = [shared, chunks, grain, n, &body]() {
    for (int64_t chunk; (chunk = shared->next.fetch_add(1)) < chunks;) {
      std::exception_ptr error;
      try {
        body(chunk * grain, std::min(n, (chunk + 1) * grain));
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(shared->mutex);
      if (error && !shared->error) shared->error = error;
      if (++shared->finished == chunks) shared->all_finished.notify_all();
    }
  };
  for (int64_t h = 0; h < helpers; ++h) at::launch(work);
  work();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->all_finished.wait(lock, [&] { return shared->finished == chunks; });
  if (shared->error) std::rethrow_exception(shared->error);
}

// TSDF and weight update of the n voxels of one block (vectorized: computed for every voxel, stored where
// updated). z: depth of each voxel; depth: reading at its pixel (NaN outside the image). Writes the signed
// distance, the weight before the update and whether the voxel was updated (1) or not (0).
void fuse_tsdf(int64_t n, const float* __restrict z, const float* __restrict depth, float* __restrict tsdf,
               float* __restrict weight, float* __restrict sdf_out, float* __restrict weight_before,
               int32_t* __restrict updated, float min_depth, float max_depth, float truncation, float max_weight) {
  for (int64_t l = 0; l < n; ++l) {
    const float d = depth[l], sdf = d - z[l];
    const int32_t update = (d >= min_depth) & (d <= max_depth) & (d > 0.0f) & (z[l] > 0.0f) & (sdf >= -truncation);
    const float w_old = weight[l], w_sum = w_old + 1.0f;
    const float ratio = sdf / truncation;
    const float observed = ratio < 1.0f ? ratio : 1.0f;
    const float tsdf_old = tsdf[l];
    const float fused = (tsdf_old * w_old + observed) / w_sum;
    const float capped = w_sum < max_weight ? w_sum : max_weight;  // (a nested ?: would stop vectorization)
    tsdf[l] = update ? fused : tsdf_old;
    weight[l] = update ? capped : w_old;
    sdf_out[l] = sdf;
    weight_before[l] = w_old;
    updated[l] = update;
  }
}

}  // namespace

// Blocks within the truncation band of the depth image.
//
// depth: (H, W) float32 metres, unfiltered (invalid = outside [min_depth, max_depth], 0 or NaN).
// rays: (ceil(H / stride) * ceil(W / stride), 3) float32 camera rays (z = 1) of every stride-th pixel, row-major.
// rotation: (3, 3) float32 camera-to-world rotation divided by the block length; origin: (3,) float32 camera
// centre in block units (+ half a voxel). offsets: (S,) float32 metres added to each depth sample.
// Sample (pixel p, offset o) lies in block floor(world_ray(p) * max(depth[p] + o, 1e-3) + origin) with
// world_ray = (x * rotation[:, 0] + y * rotation[:, 1]) + rotation[:, 2], (x, y, 1) = rays[p].
// Returns (sorted unique int64 keys, number of valid pixels of the whole image).
std::tuple<at::Tensor, int64_t> band_block_keys(const at::Tensor& depth, const at::Tensor& rays,
                                                const at::Tensor& rotation, const at::Tensor& origin,
                                                const at::Tensor& offsets, int64_t stride, double min_depth,
                                                double max_depth) {
  check_float_matrix(depth, "depth", 2, -1);
  check_float_matrix(rays, "rays", 2, 3);
  check_float_matrix(rotation, "rotation", 2, 3);
  check_float_matrix(origin, "origin", 1, 3);
  check_float_matrix(offsets, "offsets", 1, -1);
  TORCH_CHECK(stride >= 1 && rotation.size(0) == 3, "stride must be >= 1 and rotation 3 x 3");
  const int64_t H = depth.size(0), W = depth.size(1);
  const int64_t rows = (H + stride - 1) / stride, cols = (W + stride - 1) / stride, S = offsets.size(0);
  TORCH_CHECK(rays.size(0) == rows * cols, "rays must hold ", rows * cols, " rows, got ", rays.size(0));
  const float* d = depth.data_ptr<float>();
  const float* r = rays.data_ptr<float>();
  const float* off = offsets.data_ptr<float>();
  const float* R = rotation.data_ptr<float>();
  const float* t = origin.data_ptr<float>();
  const float lo = static_cast<float>(min_depth), hi = static_cast<float>(max_depth);
  const float coord_low = -static_cast<float>(kCoordOffset), coord_high = static_cast<float>(kCoordOffset);

  // 1. block coordinates of every sample of every strided valid pixel, per row of samples; bounding box
  const int64_t per_row = cols * S * 3;
  std::vector<int32_t> coords(rows * per_row);
  std::vector<int64_t> row_count(rows, 0), valid_in_rows(H, 0);
  std::vector<std::array<int32_t, 6>> row_box(rows);
  std::vector<char> row_out_of_range(rows, 0);
  parallel_chunks(H, 32, [&](int64_t begin, int64_t end) {
    for (int64_t y = begin; y < end; ++y) {
      const float* depth_row = d + y * W;
      int64_t count = 0;
      for (int64_t x = 0; x < W; ++x) count += depth_is_valid(depth_row[x], lo, hi);
      valid_in_rows[y] = count;
      if (y % stride) continue;
      const int64_t row = y / stride;
      int32_t* out = coords.data() + row * per_row;
      std::array<int32_t, 6> box = {INT32_MAX, INT32_MAX, INT32_MAX, INT32_MIN, INT32_MIN, INT32_MIN};
      bool out_of_range = false;
      int64_t n = 0;
      for (int64_t col = 0; col < cols; ++col) {
        const float depth_value = depth_row[col * stride];
        if (!depth_is_valid(depth_value, lo, hi)) continue;
        const float* ray = r + (row * cols + col) * 3;
        float world_ray[3];
        for (int a = 0; a < 3; ++a) world_ray[a] = (ray[0] * R[a * 3] + ray[1] * R[a * 3 + 1]) + R[a * 3 + 2];
        for (int64_t s = 0; s < S; ++s, ++n) {
          const float z = std::max(depth_value + off[s], 1e-3f);
          for (int a = 0; a < 3; ++a) {
            const float scaled = world_ray[a] * z;
            const float c = scaled + t[a];
            // floor(c) in [-2^20, 2^20) <=> c in [-2^20, 2^20); false for NaN
            const bool in_range = c >= coord_low && c < coord_high;
            out_of_range |= !in_range;
            const float safe = in_range ? c : 0.0f;
            int32_t floor_c = static_cast<int32_t>(safe);  // truncation, then down for negative non-integers
            floor_c -= safe < static_cast<float>(floor_c);
            out[n * 3 + a] = floor_c;
            box[a] = std::min(box[a], floor_c);
            box[a + 3] = std::max(box[a + 3], floor_c);
          }
        }
      }
      row_count[row] = n;
      row_box[row] = box;
      row_out_of_range[row] = out_of_range;
    }
  });
  int64_t valid_pixels = 0;
  for (int64_t c : valid_in_rows) valid_pixels += c;
  TORCH_CHECK_VALUE(std::none_of(row_out_of_range.begin(), row_out_of_range.end(), [](char c) { return c; }),
                    "block coordinates outside +-", kCoordOffset, ": the map extends too far from the origin");

  // 2. unique: occupancy grid over the bounding box (row-major order = key order), or sort when sparse
  std::array<int64_t, 6> box = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MIN, INT64_MIN, INT64_MIN};
  int64_t samples = 0;
  for (int64_t row = 0; row < rows; ++row) {
    if (!row_count[row]) continue;
    samples += row_count[row];
    for (int a = 0; a < 3; ++a) {
      box[a] = std::min<int64_t>(box[a], row_box[row][a]);
      box[a + 3] = std::max<int64_t>(box[a + 3], row_box[row][a + 3]);
    }
  }
  std::vector<int64_t> keys;
  if (samples > 0) {
    const int64_t ex = box[3] - box[0] + 1, ey = box[4] - box[1] + 1, ez = box[5] - box[2] + 1;
    const double cells = static_cast<double>(ex) * ey * ez;
    if (cells <= 8.0 * samples + 4096) {
      std::vector<uint8_t> occupied(static_cast<size_t>(cells), 0);
      for (int64_t row = 0; row < rows; ++row) {
        const int32_t* c = coords.data() + row * per_row;
        for (int64_t i = 0; i < row_count[row]; ++i, c += 3)
          occupied[((c[0] - box[0]) * ey + (c[1] - box[1])) * ez + (c[2] - box[2])] = 1;
      }
      for (int64_t cell = 0; cell < static_cast<int64_t>(cells); ++cell)
        if (occupied[cell]) keys.push_back(pack_key(box[0] + cell / (ey * ez), box[1] + (cell / ez) % ey,
                                                    box[2] + cell % ez));
    } else {
      keys.reserve(samples);
      for (int64_t row = 0; row < rows; ++row) {
        const int32_t* c = coords.data() + row * per_row;
        for (int64_t i = 0; i < row_count[row]; ++i, c += 3) keys.push_back(pack_key(c[0], c[1], c[2]));
      }
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    }
  }
  at::Tensor result = at::empty({static_cast<int64_t>(keys.size())}, at::kLong);
  std::copy(keys.begin(), keys.end(), result.data_ptr<int64_t>());
  return {result, valid_pixels};
}

// Slots of `keys` ((m,) int64) in the block index (index_keys (N,) int64 strictly increasing, index_slots (N,)
// int64), -1 where a key is absent: BlockIndex.lookup without torch's searchsorted, which splits even a few
// hundred keys over threads.
at::Tensor lookup_slots(const at::Tensor& index_keys, const at::Tensor& index_slots, const at::Tensor& keys) {
  for (const at::Tensor* t : {&index_keys, &index_slots, &keys})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kLong && t->is_contiguous() && t->dim() == 1,
                "index keys, index slots and keys must be contiguous int64 CPU vectors");
  TORCH_CHECK(index_keys.size(0) == index_slots.size(0), "index keys and slots differ in length");
  const int64_t* first = index_keys.data_ptr<int64_t>();
  const int64_t* last = first + index_keys.size(0);
  const int64_t* slots = index_slots.data_ptr<int64_t>();
  const int64_t* query = keys.data_ptr<int64_t>();
  at::Tensor result = at::empty({keys.size(0)}, at::kLong);
  int64_t* out = result.data_ptr<int64_t>();
  for (int64_t i = 0; i < keys.size(0); ++i) {
    const int64_t* found = std::lower_bound(first, last, query[i]);
    out[i] = found != last && *found == query[i] ? slots[found - first] : -1;
  }
  return result;
}

// Projective update of every voxel of the blocks in `slots` (layers are modified in place).
//
// slots: (n,) int64 distinct slots; block_coords: (slots, 3) int64 block coordinates of every slot.
// projection (3, 3) and translation (3,) float32 map a world point p to (u*z, v*z, z) = projection @ p +
// translation, with the principal point shifted by +1.5 pixels (one pixel of image padding + 0.5 for
// rounding by truncation), as SemanticTSDFVolume._projection. Voxel l = (x * B + y) * B + z of block c
// lies at c * block_length + (x, y, z) * voxel_size; its projection is computed as in _voxel_projection.
// depth: (H, W) float32 metres, unfiltered; color: (H, W, 3) uint8; labels: (H, W) int64 (outside [0, K)
// = unlabeled); class_probs: (H, W, K) float32; features: (H, W, F) float32; each optional.
// geometry: update TSDF/weight/color/semantics from depth (false: features only, as integrate_features).
// Returns (voxels whose TSDF changed, voxels whose features changed).
std::tuple<int64_t, int64_t> fuse_voxels(
    const at::Tensor& slots, const at::Tensor& block_coords, const at::Tensor& projection,
    const at::Tensor& translation, int64_t block_size, double block_length, double voxel_size,
    const at::Tensor& depth, const std::optional<at::Tensor>& color, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& class_probs, const std::optional<at::Tensor>& features, const at::Tensor& tsdf,
    const at::Tensor& weight, const at::Tensor& color_layer, const at::Tensor& semantic_layer,
    const at::Tensor& feature_layer, const at::Tensor& feature_weight_layer, bool geometry, double truncation,
    double max_weight, double min_depth, double max_depth, double feature_far) {
  TORCH_CHECK(slots.device().is_cpu() && slots.scalar_type() == at::kLong && slots.is_contiguous() && slots.dim() == 1,
              "slots must be a contiguous int64 CPU vector");
  TORCH_CHECK(block_coords.device().is_cpu() && block_coords.scalar_type() == at::kLong &&
                  block_coords.is_contiguous() && block_coords.dim() == 2 && block_coords.size(1) == 3,
              "block_coords must be a contiguous (slots, 3) int64 CPU tensor");
  check_float_matrix(projection, "projection", 2, 3);
  check_float_matrix(translation, "translation", 1, 3);
  check_float_matrix(depth, "depth", 2, -1);
  TORCH_CHECK(projection.size(0) == 3 && block_size >= 1, "projection must be 3 x 3 and block_size >= 1");
  const int64_t n = slots.size(0), B = block_size, V = B * B * B, H = depth.size(0), W = depth.size(1);
  TORCH_CHECK(H * W < (int64_t{1} << 31), "images of 2^31 pixels or more are not supported");
  const int64_t K = semantic_layer.dim() == 3 ? semantic_layer.size(2) : 0;
  const int64_t F = feature_layer.dim() == 3 ? feature_layer.size(2) : 0;
  float* tsdf_p = layer_data(tsdf, "tsdf", V);
  float* weight_p = layer_data(weight, "weight", V);
  float* color_p = layer_data(color_layer, "color", V * 3);
  float* semantic_p = layer_data(semantic_layer, "semantic", V * K);
  float* feature_p = layer_data(feature_layer, "features", V * F);
  float* feature_weight_p = layer_data(feature_weight_layer, "feature_weight", V);
  const int64_t capacity = tsdf.size(0);
  TORCH_CHECK(block_coords.size(0) == capacity, "block_coords must have one row per slot of the layers");
  const int64_t* slot_p = slots.data_ptr<int64_t>();
  for (int64_t b = 0; b < n; ++b)
    TORCH_CHECK(slot_p[b] >= 0 && slot_p[b] < capacity, "slot ", slot_p[b], " outside the pools (", capacity, ")");

  const uint8_t* rgb = nullptr;
  if (color) {
    TORCH_CHECK(color->scalar_type() == at::kByte && color->is_contiguous() && color->dim() == 3 &&
                    color->size(0) == H && color->size(1) == W && color->size(2) == 3,
                "color must be a contiguous (H, W, 3) uint8 tensor");
    rgb = color->data_ptr<uint8_t>();
  }
  const int64_t* label_p = nullptr;
  if (labels) {
    TORCH_CHECK(labels->scalar_type() == at::kLong && labels->is_contiguous() && labels->numel() == H * W,
                "labels must be a contiguous (H, W) int64 tensor");
    label_p = labels->data_ptr<int64_t>();
  }
  const float* prob_p = nullptr;
  if (class_probs) {
    check_float_matrix(*class_probs, "class_probs", 3, K);
    TORCH_CHECK(class_probs->numel() == H * W * K, "class_probs must be (H, W, K)");
    prob_p = class_probs->data_ptr<float>();
  }
  const float* feat_p = nullptr;
  if (features) {
    check_float_matrix(*features, "features", 3, F);
    TORCH_CHECK(F > 0 && features->numel() == H * W * F, "features must be (H, W, F) with F = feature_dim > 0");
    feat_p = features->data_ptr<float>();
  }

  // (u*z, v*z, z) of voxel 0 of every block and offsets of the voxels within a block (three columns, so
  // the projection loop below vectorizes): M @ p summed as (p0 * M[r][0] + p1 * M[r][1]) + p2 * M[r][2]
  const float* M = projection.data_ptr<float>();
  const float* Mt = translation.data_ptr<float>();
  const auto rotate = [M](float p0, float p1, float p2, int r) {
    return (p0 * M[r * 3] + p1 * M[r * 3 + 1]) + p2 * M[r * 3 + 2];
  };
  std::vector<float> bp(n * 3);
  const int64_t* coords = block_coords.data_ptr<int64_t>();
  const float length = static_cast<float>(block_length);
  for (int64_t b = 0; b < n; ++b) {
    const int64_t* c = coords + slot_p[b] * 3;
    const float o0 = static_cast<float>(c[0]) * length, o1 = static_cast<float>(c[1]) * length,
                o2 = static_cast<float>(c[2]) * length;
    for (int r = 0; r < 3; ++r) bp[b * 3 + r] = rotate(o0, o1, o2, r) + Mt[r];
  }
  std::vector<float> vx(V), vy(V), vz(V);
  const float voxel = static_cast<float>(voxel_size);
  for (int64_t l = 0; l < V; ++l) {
    const float o0 = static_cast<float>(l / (B * B)) * voxel, o1 = static_cast<float>((l / B) % B) * voxel,
                o2 = static_cast<float>(l % B) * voxel;
    vx[l] = rotate(o0, o1, o2, 0);
    vy[l] = rotate(o0, o1, o2, 1);
    vz[l] = rotate(o0, o1, o2, 2);
  }
  const float vz_min = *std::min_element(vz.begin(), vz.end());
  const float* d = depth.data_ptr<float>();
  // Blocks reaching behind the camera divide by max(z, 1e-6) (their voxels with z <= 0 are skipped);
  // when there are none, every z is positive and the torch path divides by z itself.
  bool any_behind = false;
  for (int64_t b = 0; b < n; ++b) any_behind = any_behind || bp[b * 3 + 2] + vz_min <= 0.0f;
  const float min_divisor = any_behind ? 1e-6f : -std::numeric_limits<float>::infinity();
  const float u_max = static_cast<float>(W) + 1.5f, v_max = static_cast<float>(H) + 1.5f;
  const float trunc = static_cast<float>(truncation), cap = static_cast<float>(max_weight);
  const float lo = static_cast<float>(min_depth), hi = static_cast<float>(max_depth);
  const float far = static_cast<float>(feature_far);
  const bool semantics = label_p || prob_p;

  std::vector<int64_t> geometry_count(n, 0), feature_count(n, 0);
  const int32_t width = static_cast<int32_t>(W), height = static_cast<int32_t>(H);
  parallel_chunks(n, 8, [&](int64_t begin, int64_t end) {
    // Per voxel of one block. The loops marked "vectorized" compute every voxel and select what to store
    // (no branches: g++ vectorizes them); the others gather from the images.
    std::vector<float> zs(V), depth_at(V), sdfs(V), w_olds(V);
    std::vector<int32_t> us(V), vs(V), pixels(V), updates(V);
    std::vector<float> votes(K);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int64_t b = begin; b < end; ++b) {
      const float bx = bp[b * 3], by = bp[b * 3 + 1], bz = bp[b * 3 + 2];
      for (int64_t l = 0; l < V; ++l) {  // vectorized: padded pixel (u, v) and depth z of every voxel
        const float z = bz + vz[l];
        const float divisor = std::max(z, min_divisor);
        const float u = (bx + vx[l]) / divisor, v = (by + vy[l]) / divisor;
        zs[l] = z;
        us[l] = static_cast<int32_t>(std::min(std::max(u, 0.0f), u_max));
        vs[l] = static_cast<int32_t>(std::min(std::max(v, 0.0f), v_max));
      }
      for (int64_t l = 0; l < V; ++l) {  // vectorized: pixel index, -1 on the padding (outside the image)
        const int32_t u = us[l], v = vs[l];
        const int32_t inside = (u >= 1) & (u <= width) & (v >= 1) & (v <= height);
        pixels[l] = inside ? (v - 1) * width + (u - 1) : -1;
      }
      const int64_t first = slot_p[b] * V;
      int64_t updated = 0, featured = 0;
      if (geometry) {
        for (int64_t l = 0; l < V; ++l) depth_at[l] = pixels[l] >= 0 ? d[pixels[l]] : nan;
        fuse_tsdf(V, zs.data(), depth_at.data(), tsdf_p + first, weight_p + first, sdfs.data(), w_olds.data(),
                  updates.data(), lo, hi, trunc, cap);
        for (int64_t l = 0; l < V; ++l) updated += updates[l];
        if (rgb && updated) {  // only where updated: the image and the color layer are the memory traffic here
          for (int64_t l = 0; l < V; ++l) {
            if (!updates[l]) continue;
            float* c = color_p + (first + l) * 3;
            const uint8_t* observed_rgb = rgb + static_cast<int64_t>(pixels[l]) * 3;
            const float w_old = w_olds[l], w_sum = w_old + 1.0f;
            for (int a = 0; a < 3; ++a) c[a] = (c[a] * w_old + static_cast<float>(observed_rgb[a])) / w_sum;
          }
        }
        if (semantics && updated) {
          for (int64_t l = 0; l < V; ++l) {
            if (!updates[l] || !(std::abs(sdfs[l]) < trunc)) continue;
            float* s = semantic_p + (first + l) * K;
            const int64_t pixel = pixels[l];
            if (label_p) {
              const int64_t label = label_p[pixel];
              if (label < 0 || label >= K) continue;
              for (int64_t k = 0; k < K; ++k) votes[k] = s[k];
              votes[label] += 1.0f;
            } else {
              for (int64_t k = 0; k < K; ++k) votes[k] = s[k] + prob_p[pixel * K + k];
            }
            float total = 0.0f;
            for (int64_t k = 0; k < K; ++k) total += votes[k];
            const float scale = std::min(cap / total, 1.0f);
            for (int64_t k = 0; k < K; ++k) s[k] = votes[k] * scale;
          }
        }
      }
      if (feat_p) {
        for (int64_t l = 0; l < V; ++l) {
          const float z = zs[l];
          if (pixels[l] < 0 || !(z >= lo && z <= far)) continue;
          const int64_t voxel = first + l;
          const float w_old = feature_weight_p[voxel], w_sum = w_old + 1.0f;
          float* f = feature_p + voxel * F;
          const float* observed = feat_p + static_cast<int64_t>(pixels[l]) * F;
          for (int64_t c = 0; c < F; ++c) f[c] = (f[c] * w_old + observed[c]) / w_sum;
          feature_weight_p[voxel] = std::min(w_sum, cap);
          ++featured;
        }
      }
      geometry_count[b] = updated;
      feature_count[b] = featured;
    }
  });
  int64_t geometry_total = 0, feature_total = 0;
  for (int64_t b = 0; b < n; ++b) {
    geometry_total += geometry_count[b];
    feature_total += feature_count[b];
  }
  return {geometry_total, feature_total};
}

// mesh_cubes: marching cubes over the cubes of n blocks, with every vertex made once.
//
// tsdf (m, V) float32 and valid (m, V) bool are a surface's distance and validity on m blocks ("rows"), V = B^3
// voxels each in storage order ((i * B + j) * B + k); exclude (m, V) bool or None. neighbour_rows (n, 8) int64: for
// each block to mesh, the row of the block offset by (code & 1, code >> 1 & 1, code >> 2 & 1) from it, -1 where
// absent (code 0, the block itself, is always present). A block's cubes are those whose lowest corner is one of its
// voxels; a cube is meshed where its 8 corners are all valid, except where all 8 are excluded; corner bit c of its
// case is set where the corner at corner_offsets[c] has a negative distance. block_coords (n, 3) int64; tables:
// triangle_edges (256, 5, 3), triangle_count (256,), corner_offsets (8, 3), edge_lower (12, 3) (offset of an
// edge's lower corner) and edge_axis (12,), all int64.
//
// block_piece (n,) int64, non-decreasing: the mesh piece each block's triangles go to (all 0 for one mesh).
//
// A vertex lies on a cube edge; the edge belongs to the row holding its lower voxel, so an edge shared by the cubes
// of several blocks of a piece gets one vertex in that piece, numbered when a triangle first uses it (a piece has
// its own copy of the vertices it shares with another). Returns
//   triangles (T, 3) int64 vertex numbers, in block order, cube order (x, y, z) within a block, table order within
//     a cube (the torch path's order);
//   triangle_block (T,) int64 block (0..n) of each triangle;
//   vertex_keys (N,) int64 edge key of each vertex (meshing.edge_keys; the caller checks the range);
//   vertex_ends (N, 2) int64 row * V + voxel of the edge's lower and upper voxel;
//   vertex_t (N,) float32 where the distance crosses zero between them, s0 / (s0 - s1) clamped to [0, 1];
//   vertex_positions (N, 3) float32 (lower voxel + t along the edge) * voxel_size, in the world frame;
//   vertex_piece (N,) int64 piece of each vertex (non-decreasing).
constexpr uint8_t kValid = 1, kInside = 2, kExcluded = 4;  // mesh_cubes' per-voxel flags
constexpr int64_t kMaxEdge = 65;  // block edge + 1

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> mesh_cubes(
    const at::Tensor& tsdf, const at::Tensor& valid, const std::optional<at::Tensor>& exclude,
    const at::Tensor& neighbour_rows, const at::Tensor& block_coords, const at::Tensor& block_piece,
    const at::Tensor& triangle_edges,
    const at::Tensor& triangle_count, const at::Tensor& corner_offsets, const at::Tensor& edge_lower,
    const at::Tensor& edge_axis, int64_t block_size, double voxel_size, int64_t coord_bits, int64_t coord_offset) {
  const int64_t B = block_size, E = B + 1, V = B * B * B;
  TORCH_CHECK(B >= 1 && E <= kMaxEdge, "block size must be 1 to ", kMaxEdge - 1, ", got ", B);
  check_float_matrix(tsdf, "tsdf", 2, V);
  const int64_t m = tsdf.size(0);
  TORCH_CHECK(valid.scalar_type() == at::kBool && valid.is_contiguous() && valid.sizes() == tsdf.sizes(),
              "valid must be a contiguous bool tensor shaped like tsdf");
  const bool* excluded = nullptr;
  if (exclude.has_value()) {
    TORCH_CHECK(exclude->scalar_type() == at::kBool && exclude->is_contiguous() && exclude->sizes() == tsdf.sizes(),
                "exclude must be a contiguous bool tensor shaped like tsdf");
    excluded = exclude->data_ptr<bool>();
  }
  for (const at::Tensor* t :
       {&neighbour_rows, &block_coords, &block_piece, &triangle_edges, &triangle_count, &corner_offsets, &edge_lower, &edge_axis})
    TORCH_CHECK(t->scalar_type() == at::kLong && t->is_contiguous(),
                "rows, coordinates and tables must be contiguous int64");
  const int64_t n = neighbour_rows.size(0);
  TORCH_CHECK(neighbour_rows.dim() == 2 && neighbour_rows.size(1) == 8 && block_coords.size(0) == n &&
                  block_piece.numel() == n,
              "neighbour_rows must be (n, 8), block_coords (n, 3) and block_piece (n,)");
  const int64_t* pieces = block_piece.data_ptr<int64_t>();
  for (int64_t b = 1; b < n; ++b) TORCH_CHECK(pieces[b] >= pieces[b - 1], "block_piece must be non-decreasing");
  const float* distance = tsdf.data_ptr<float>();
  const bool* defined = valid.data_ptr<bool>();
  const int64_t* rows = neighbour_rows.data_ptr<int64_t>();
  const int64_t* coords = block_coords.data_ptr<int64_t>();
  const int64_t* edges = triangle_edges.data_ptr<int64_t>();
  const int64_t* counts = triangle_count.data_ptr<int64_t>();
  const int64_t* corners = corner_offsets.data_ptr<int64_t>();
  const int64_t* lower = edge_lower.data_ptr<int64_t>();
  const int64_t* axes = edge_axis.data_ptr<int64_t>();
  for (int64_t i = 0; i < n * 8; ++i)
    TORCH_CHECK(rows[i] < m && (rows[i] >= 0 || (i % 8 != 0 && rows[i] == -1)), "neighbour row out of range");

  // the block plus the first voxel layer of its +x/+y/+z neighbours: which neighbour (code) and voxel of it each of
  // its E^3 points is (for the vertices; the corner flags below are read row by row)
  std::vector<uint8_t> point_code(E * E * E);
  std::vector<int64_t> point_voxel(E * E * E);
  for (int64_t x = 0; x < E; ++x)
    for (int64_t y = 0; y < E; ++y)
      for (int64_t z = 0; z < E; ++z) {
        const int64_t p = (x * E + y) * E + z;
        point_code[p] = (x == B) | (y == B) << 1 | (z == B) << 2;
        point_voxel[p] = ((x % B) * B + y % B) * B + z % B;
      }
  for (int c = 0; c < 8; ++c)  // corner bit c of a case is the corner at (dx, dy, dz) = (c & 1, c >> 1 & 1, c >> 2 & 1)
    TORCH_CHECK(corners[3 * c] == (c & 1) && corners[3 * c + 1] == (c >> 1 & 1) && corners[3 * c + 2] == (c >> 2 & 1),
                "corner c of the tables must lie at (c & 1, c >> 1 & 1, c >> 2 & 1)");
  int64_t edge_step[12];  // offset of each edge's lower corner from the cube's lowest corner, in points
  for (int e = 0; e < 12; ++e) edge_step[e] = (lower[3 * e] * E + lower[3 * e + 1]) * E + lower[3 * e + 2];
  const int64_t axis_step[3] = {E * E, E, 1};

  std::vector<uint8_t> flags(E * E * E);
  std::vector<int64_t> row_first(m, -1);  // where a row's vertex numbers (V * 3, -1 = none yet) start in `numbers`
  std::vector<int32_t> numbers;
  numbers.reserve(m * V * 3);  // grows without moving (pages are touched only when a row is allocated)
  std::vector<int64_t> triangles, triangle_blocks, vertex_keys, vertex_ends, vertex_piece;
  std::vector<float> vertex_t, vertex_positions;
  const float voxel = static_cast<float>(voxel_size);

  std::vector<uint8_t> voxel_flags(m * V);  // every voxel's flags, in one vectorized pass
  for (int64_t i = 0; i < m * V; ++i) {
    const int is_valid = defined[i];
    voxel_flags[i] = static_cast<uint8_t>(is_valid | (is_valid & (distance[i] < 0.0f)) << 1);
  }
  if (excluded != nullptr)
    for (int64_t i = 0; i < m * V; ++i) voxel_flags[i] |= static_cast<uint8_t>(excluded[i]) << 2;

  for (int64_t b = 0; b < n; ++b) {
    const int64_t* block_rows = rows + 8 * b;
    for (int64_t x = 0; x < E; ++x)
      for (int64_t y = 0; y < E; ++y) {
        const int code = (x == B) | (y == B) << 1;
        uint8_t* out = flags.data() + (x * E + y) * E;
        const int64_t row = block_rows[code], above = block_rows[code | 4], at = ((x % B) * B + y % B) * B;
        if (row >= 0)
          std::copy_n(voxel_flags.data() + row * V + at, B, out);
        else
          std::fill_n(out, B, uint8_t{0});
        out[B] = above >= 0 ? voxel_flags[above * V + at] : uint8_t{0};  // z = B: the +z neighbour's first layer
      }
    int any_inside = 0, any_outside = 0;
    for (int64_t p = 0; p < E * E * E; ++p) {
      any_inside |= flags[p] & kInside;
      any_outside |= (flags[p] & (kValid | kInside)) == kValid;
    }
    if (!(any_inside && any_outside)) continue;  // no valid corner pair of opposite signs: no surface

    // vertex numbers of the edges owned by the block and its 7 neighbours (allocated now, so pointers stay valid)
    int32_t* owned[8];
    for (int c = 0; c < 8; ++c) {
      const int64_t row = block_rows[c];
      if (row >= 0 && row_first[row] < 0) {
        row_first[row] = static_cast<int64_t>(numbers.size());
        numbers.resize(numbers.size() + V * 3, -1);
      }
    }
    for (int c = 0; c < 8; ++c) owned[c] = block_rows[c] >= 0 ? numbers.data() + row_first[block_rows[c]] : nullptr;
    const int64_t piece = pieces[b];
    const int64_t origin[3] = {coords[3 * b] * B + coord_offset, coords[3 * b + 1] * B + coord_offset,
                               coords[3 * b + 2] * B + coord_offset};
    auto vertex = [&](int64_t p, int64_t axis) -> int64_t {
      int32_t& number = owned[point_code[p]][point_voxel[p] * 3 + axis];
      if (number < 0 || vertex_piece[number] != piece) {  // pieces come one after the other
        number = static_cast<int32_t>(vertex_keys.size());
        vertex_piece.push_back(piece);
        const int64_t lower_voxel[3] = {origin[0] + p / (E * E), origin[1] + p / E % E, origin[2] + p % E};
        vertex_keys.push_back(((lower_voxel[0] << (2 * coord_bits)) | (lower_voxel[1] << coord_bits) | lower_voxel[2]) *
                                  3 + axis);
        const int64_t upper = p + axis_step[axis];
        const int64_t ends[2] = {block_rows[point_code[p]] * V + point_voxel[p],
                                 block_rows[point_code[upper]] * V + point_voxel[upper]};
        vertex_ends.insert(vertex_ends.end(), ends, ends + 2);
        const float s0 = distance[ends[0]], s1 = distance[ends[1]];
        const float t = std::min(std::max(s0 / (s0 - s1), 0.0f), 1.0f);
        vertex_t.push_back(t);
        for (int a = 0; a < 3; ++a) {
          const float start = static_cast<float>(lower_voxel[a] - coord_offset);
          vertex_positions.push_back((a == axis ? start + t : start) * voxel);
        }
      }
      return number;
    };
    for (int64_t i = 0; i < B; ++i)
      for (int64_t j = 0; j < B; ++j) {
        // the 4 corners of each z layer of this column of cubes: inside bits (bit dx + 2 dy) and flags all share
        const uint8_t* c0 = flags.data() + (i * E + j) * E;
        const uint8_t *c1 = c0 + E * E, *c2 = c0 + E, *c3 = c0 + E * E + E;
        uint8_t inside[kMaxEdge], shared[kMaxEdge];
        for (int64_t z = 0; z < E; ++z) {
          inside[z] = static_cast<uint8_t>((c0[z] >> 1 & 1) | (c1[z] >> 1 & 1) << 1 | (c2[z] >> 1 & 1) << 2 |
                                           (c3[z] >> 1 & 1) << 3);
          shared[z] = c0[z] & c1[z] & c2[z] & c3[z];
        }
        for (int64_t k = 0; k < B; ++k) {
          const int code = inside[k] | inside[k + 1] << 4;
          const uint8_t all = shared[k] & shared[k + 1];
          if (!(all & kValid) || (all & kExcluded) || code == 0 || code == 255) continue;
          const int64_t first = (i * E + j) * E + k;
          for (int64_t t = 0; t < counts[code]; ++t) {
            for (int v = 0; v < 3; ++v) {
              const int64_t e = edges[(code * 5 + t) * 3 + v];
              triangles.push_back(vertex(first + edge_step[e], axes[e]));
            }
            triangle_blocks.push_back(b);
          }
        }
      }
  }
  auto to_tensor = [](const auto& values, std::vector<int64_t> shape) {
    using Value = typename std::decay_t<decltype(values)>::value_type;
    at::Tensor out = at::empty(shape, std::is_same_v<Value, float> ? at::kFloat : at::kLong);
    std::copy(values.begin(), values.end(), out.data_ptr<Value>());
    return out;
  };
  const int64_t T = static_cast<int64_t>(triangle_blocks.size()), N = static_cast<int64_t>(vertex_keys.size());
  return {to_tensor(triangles, {T, 3}), to_tensor(triangle_blocks, {T}), to_tensor(vertex_keys, {N}),
          to_tensor(vertex_ends, {N, 2}), to_tensor(vertex_t, {N}), to_tensor(vertex_positions, {N, 3}),
          to_tensor(vertex_piece, {N})};
}

// vertex_attributes: each mesh vertex's color, label and label share, and (sources other than "observed") surface
// confidence, interpolated between the two voxels of its edge by t (surface_fields.SurfaceFields.interpolated, the
// torch path, states the rules). voxels (N, 2) int64 flat voxel indices (slot * V + voxel) of the pool; t (N,)
// float32. Layers over the pool: color (P, V, 3), semantic (P, V, K), weight (P, V), and the network's pred_color
// (P, V, 3), pred_semantic (P, V, K), pred_weight (P, V), pred_confidence (P, V), all float32, the four None without
// predictions. source: 0 observed, 1 completed, 2 both or additions. Returns rgb (N, 3) uint8, label (N,) int64
// (-1 where all scores are 0), share (N,) float32 (the label's share of the scores), surface_confidence (N,)
// float32 (empty for source 0).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> vertex_attributes(
    const at::Tensor& voxels, const at::Tensor& t, const at::Tensor& color, const at::Tensor& semantic,
    const at::Tensor& weight, const std::optional<at::Tensor>& pred_color,
    const std::optional<at::Tensor>& pred_semantic, const std::optional<at::Tensor>& pred_weight,
    const std::optional<at::Tensor>& pred_confidence, int64_t source, double min_weight,
    double override_probability) {
  TORCH_CHECK(voxels.device().is_cpu() && voxels.scalar_type() == at::kLong && voxels.is_contiguous() &&
                  voxels.dim() == 2 && voxels.size(1) == 2,
              "voxels must be a contiguous (N, 2) int64 CPU tensor");
  const int64_t N = voxels.size(0);
  check_float_matrix(t, "t", 1, -1);
  TORCH_CHECK(t.size(0) == N, "t must hold one value per vertex");
  TORCH_CHECK(source >= 0 && source <= 2, "source must be 0, 1 or 2");
  const bool predictions = pred_color.has_value();
  TORCH_CHECK(predictions == pred_semantic.has_value() && predictions == pred_weight.has_value() &&
                  predictions == pred_confidence.has_value() && (predictions || source == 0),
              "the prediction layers come all together, and sources other than observed need them");
  const int64_t K = semantic.size(-1), P = weight.size(0), V = P ? weight.numel() / P : 0, voxels_in_pool = P * V;
  auto pool_layer = [P](const at::Tensor& layer, const char* name, int64_t per_slot) {
    TORCH_CHECK(layer.dim() >= 1 && layer.size(0) == P, "layer ", name, " must have one row per slot of weight");
    return layer_data(layer, name, per_slot);
  };
  const float* color_p = pool_layer(color, "color", 3 * V);
  const float* semantic_p = pool_layer(semantic, "semantic", K * V);
  const float* weight_p = pool_layer(weight, "weight", V);
  const float *pred_color_p = nullptr, *pred_semantic_p = nullptr, *pred_weight_p = nullptr,
              *pred_confidence_p = nullptr;
  if (predictions) {
    pred_color_p = pool_layer(*pred_color, "pred_color", 3 * V);
    pred_semantic_p = pool_layer(*pred_semantic, "pred_semantic", K * V);
    pred_weight_p = pool_layer(*pred_weight, "pred_weight", V);
    pred_confidence_p = pool_layer(*pred_confidence, "pred_confidence", V);
  }
  const int64_t* voxels_p = voxels.data_ptr<int64_t>();
  for (int64_t i = 0; i < 2 * N; ++i) {
    TORCH_CHECK(voxels_p[i] >= 0 && voxels_p[i] < voxels_in_pool, "voxel index ", voxels_p[i], " outside the pool");
  }
  const float* t_p = t.data_ptr<float>();
  at::Tensor rgb = at::empty({N, 3}, at::kByte), label = at::empty({N}, at::kLong), share = at::empty({N}, at::kFloat);
  at::Tensor surface_confidence = at::empty({source == 0 ? 0 : N}, at::kFloat);
  uint8_t* rgb_p = rgb.data_ptr<uint8_t>();
  int64_t* label_p = label.data_ptr<int64_t>();
  float* share_p = share.data_ptr<float>();
  float* surface_p = surface_confidence.data_ptr<float>();
  const float threshold = static_cast<float>(min_weight), override_p = static_cast<float>(override_probability);
  const std::vector<float> zeros(K, 0.0f);
  auto lerp = [](float a, float b, float w) { return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w); };
  parallel_chunks(N, 4096, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(K);
    for (int64_t i = begin; i < end; ++i) {
      const float w = t_p[i];
      const float* end_colors[2];
      float predicted_colors[2][3];
      const float* end_scores[2];
      float end_surface[2];
      for (int e = 0; e < 2; ++e) {
        const int64_t v = voxels_p[2 * i + e];
        const bool observed = weight_p[v] > threshold;
        end_colors[e] = color_p + 3 * v;
        end_scores[e] = semantic_p + K * v;
        end_surface[e] = observed ? 1.0f : 0.0f;
        if (!predictions) continue;
        const bool use_prediction = pred_weight_p[v] > 0.0f;
        const float* probabilities = pred_semantic_p + K * v;
        if (source == 1 || (source == 2 && !observed)) {
          for (int c = 0; c < 3; ++c) predicted_colors[e][c] = pred_color_p[3 * v + c] * 255.0f;
          end_colors[e] = predicted_colors[e];
        }
        if (source == 1) {
          end_scores[e] = use_prediction ? probabilities : zeros.data();
          end_surface[e] = pred_confidence_p[v];
        } else {
          if (source == 2 && !observed) end_surface[e] = pred_confidence_p[v];
          if (use_prediction) {
            float votes = 0.0f, top = probabilities[0];
            for (int64_t k = 0; k < K; ++k) votes += end_scores[e][k];
            for (int64_t k = 1; k < K; ++k) top = std::max(top, probabilities[k]);
            if (votes <= 0.0f || top > override_p) end_scores[e] = probabilities;
          }
        }
      }
      for (int c = 0; c < 3; ++c) {
        const float value = std::nearbyint(lerp(end_colors[0][c], end_colors[1][c], w));
        rgb_p[3 * i + c] = static_cast<uint8_t>(std::min(std::max(value, 0.0f), 255.0f));
      }
      float total = 0.0f, best = 0.0f;
      int64_t best_class = 0;
      for (int64_t k = 0; k < K; ++k) {
        scores[k] = lerp(end_scores[0][k], end_scores[1][k], w);
        total += scores[k];
        if (k == 0 || scores[k] > best) {
          best = scores[k];
          best_class = k;
        }
      }
      label_p[i] = total > 0.0f ? best_class : -1;
      share_p[i] = total > 0.0f ? best / std::max(total, 1e-12f) : 0.0f;
      if (source != 0) surface_p[i] = lerp(end_surface[0], end_surface[1], w);
    }
  });
  return {rgb, label, share, surface_confidence};
}

// Python: torch.ops.semantic_recon_ros.<name>. Calls release the GIL; layers are modified in place (a!).
TORCH_LIBRARY(semantic_recon_ros, m) {
  m.def("band_block_keys(Tensor depth, Tensor rays, Tensor rotation, Tensor origin, Tensor offsets, int stride, "
        "float min_depth, float max_depth) -> (Tensor, int)",
        &band_block_keys);
  m.def("lookup_slots(Tensor index_keys, Tensor index_slots, Tensor keys) -> Tensor", &lookup_slots);
  m.def("fuse_voxels(Tensor slots, Tensor block_coords, Tensor projection, Tensor translation, int block_size, "
        "float block_length, float voxel_size, Tensor depth, Tensor? color, Tensor? labels, Tensor? class_probs, "
        "Tensor? features, Tensor(a!) tsdf, Tensor(b!) weight, Tensor(c!) color_layer, Tensor(d!) semantic_layer, "
        "Tensor(e!) feature_layer, Tensor(f!) feature_weight_layer, bool geometry, float truncation, "
        "float max_weight, float min_depth, float max_depth, float feature_far) -> (int, int)",
        &fuse_voxels);
  m.def("mesh_cubes(Tensor tsdf, Tensor valid, Tensor? exclude, Tensor neighbour_rows, Tensor block_coords, "
        "Tensor block_piece, Tensor triangle_edges, Tensor triangle_count, Tensor corner_offsets, Tensor edge_lower, "
        "Tensor edge_axis, "
        "int block_size, float voxel_size, int coord_bits, int coord_offset) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
        &mesh_cubes);
  m.def("vertex_attributes(Tensor voxels, Tensor t, Tensor color, Tensor semantic, Tensor weight, "
        "Tensor? pred_color, Tensor? pred_semantic, Tensor? pred_weight, Tensor? pred_confidence, int source, "
        "float min_weight, float override_probability) -> (Tensor, Tensor, Tensor, Tensor)",
        &vertex_attributes);
}
