/* Print code|name|message for every cudaError_t libcudart knows (no GPU needed):
 * the messages PyTorch and others print as "CUDA error: <message>".
 * Built and run by tools/gen_signature_catalogs.py excerpts. */
#include <stdio.h>
#include <string.h>
#include <cuda_runtime_api.h>

static void show(int code) {
  const char *name = cudaGetErrorName((cudaError_t)code);
  if (name == NULL || strcmp(name, "unrecognized error code") == 0) return;
  printf("%d|%s|%s\n", code, name, cudaGetErrorString((cudaError_t)code));
}

int main(void) {
  for (int code = 0; code < 1100; ++code) show(code);
  show(10000); /* cudaErrorApiFailureBase */
  return 0;
}
