// Loads fatbin images with the CUDA driver API and launches a known kernel.
//
// usage: launcher FILE.fatbin...
// For each file prints one line:
//   <file> load=<CUDA error name> launch=<CUDA error name|skipped> kernel=<name|->
// libcuda.so.1 is opened with dlopen so this builds without a GPU or the
// driver installed (only cuda.h is needed): nvcc launcher.cpp -o launcher -ldl
#include <cuda.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

struct Driver {
    CUresult (*init)(unsigned int);
    CUresult (*driverGetVersion)(int *);
    CUresult (*deviceGet)(CUdevice *, int);
    CUresult (*deviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
    CUresult (*primaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*ctxSetCurrent)(CUcontext);
    CUresult (*ctxSynchronize)(void);
    CUresult (*moduleLoadData)(CUmodule *, const void *);
    CUresult (*moduleUnload)(CUmodule);
    CUresult (*moduleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*memAlloc)(CUdeviceptr *, size_t);
    CUresult (*memFree)(CUdeviceptr);
    CUresult (*launchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void **, void **);
    CUresult (*getErrorName)(CUresult, const char **);
};

template <typename T>
void bind(void *lib, T &slot, const char *name) {
    slot = reinterpret_cast<T>(dlsym(lib, name));
    if (!slot) {
        std::fprintf(stderr, "launcher: libcuda.so.1 lacks %s\n", name);
        std::exit(3);
    }
}

const char *name_of(const Driver &cu, CUresult rc) {
    const char *text = nullptr;
    return cu.getErrorName(rc, &text) == CUDA_SUCCESS && text ? text : "CUDA_ERROR_?";
}

std::vector<char> read_file(const char *path) {
    std::vector<char> data;
    FILE *file = std::fopen(path, "rb");
    if (!file) return data;
    char chunk[1 << 16];
    size_t got;
    while ((got = std::fread(chunk, 1, sizeof chunk, file)) > 0) data.insert(data.end(), chunk, chunk + got);
    std::fclose(file);
    // cuModuleLoadData may treat the image as text (PTX); keep it terminated.
    data.push_back('\0');
    return data;
}

}  // namespace

int main(int argc, char **argv) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        std::fprintf(stderr, "launcher: cannot open libcuda.so.1: %s\n", dlerror());
        return 3;
    }
    Driver cu{};
    bind(lib, cu.init, "cuInit");
    bind(lib, cu.driverGetVersion, "cuDriverGetVersion");
    bind(lib, cu.deviceGet, "cuDeviceGet");
    bind(lib, cu.deviceGetAttribute, "cuDeviceGetAttribute");
    bind(lib, cu.primaryCtxRetain, "cuDevicePrimaryCtxRetain");
    bind(lib, cu.ctxSetCurrent, "cuCtxSetCurrent");
    bind(lib, cu.ctxSynchronize, "cuCtxSynchronize");
    bind(lib, cu.moduleLoadData, "cuModuleLoadData");
    bind(lib, cu.moduleUnload, "cuModuleUnload");
    bind(lib, cu.moduleGetFunction, "cuModuleGetFunction");
    bind(lib, cu.memAlloc, "cuMemAlloc_v2");
    bind(lib, cu.memFree, "cuMemFree_v2");
    bind(lib, cu.launchKernel, "cuLaunchKernel");
    bind(lib, cu.getErrorName, "cuGetErrorName");

    CUresult rc = cu.init(0);
    if (rc != CUDA_SUCCESS) {
        std::fprintf(stderr, "launcher: cuInit: %s\n", name_of(cu, rc));
        return 3;
    }
    CUdevice device;
    CUcontext context;
    int version = 0, major = 0, minor = 0;
    cu.driverGetVersion(&version);
    cu.deviceGet(&device, 0);
    cu.deviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
    cu.deviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
    cu.primaryCtxRetain(&context, device);
    cu.ctxSetCurrent(context);
    std::printf("# driver_cuda=%d.%d cc=%d.%d\n", version / 1000, (version % 1000) / 10, major, minor);

    // Kernels in fixtures/fatbins/src: extern "C" names, and main.cu's fill(int*).
    const char *kernels[] = {"add_one", "use_twice", "_Z4fillPi"};
    CUdeviceptr buffer = 0;
    cu.memAlloc(&buffer, 1024 * sizeof(int));
    for (int i = 1; i < argc; ++i) {
        std::vector<char> image = read_file(argv[i]);
        CUmodule module;
        rc = image.size() > 1 ? cu.moduleLoadData(&module, image.data()) : CUDA_ERROR_FILE_NOT_FOUND;
        if (rc != CUDA_SUCCESS) {
            std::printf("%s load=%s launch=skipped kernel=-\n", argv[i], name_of(cu, rc));
            continue;
        }
        const char *found = nullptr;
        CUfunction function;
        for (const char *kernel : kernels) {
            if (cu.moduleGetFunction(&function, module, kernel) == CUDA_SUCCESS) {
                found = kernel;
                break;
            }
        }
        CUresult launched = CUDA_ERROR_NOT_FOUND;
        if (found) {
            int count = 1024;
            void *args[] = {&buffer, &count};
            launched = cu.launchKernel(function, 8, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr);
            if (launched == CUDA_SUCCESS) launched = cu.ctxSynchronize();
        }
        std::printf("%s load=CUDA_SUCCESS launch=%s kernel=%s\n", argv[i], name_of(cu, launched), found ? found : "-");
        cu.moduleUnload(module);
    }
    cu.memFree(buffer);
    return 0;
}
