// An NVTX tool for tests: loaded by the NVTX3 headers in the stoke binary when NVTX_INJECTION64_PATH names this
// library (as Nsight Systems does), it appends every range push/pop and thread name to the file named by
// STOKE_NVTX_LOG, one line each: "<tid> push <name>", "<tid> pop", "<tid> thread <name>".
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <nvtx3/nvToolsExt.h>

namespace {

std::mutex g_mutex;
FILE* g_log = nullptr;

long tid() { return static_cast<long>(::syscall(SYS_gettid)); }

int NVTX_API push_a(const char* name) {
  std::lock_guard lock(g_mutex);
  if (g_log) std::fprintf(g_log, "%ld push %s\n", tid(), name ? name : "");
  return 0;
}

int NVTX_API pop() {
  std::lock_guard lock(g_mutex);
  if (g_log) std::fprintf(g_log, "%ld pop\n", tid());
  return 0;
}

void NVTX_API name_os_thread_a(uint32_t thread, const char* name) {
  std::lock_guard lock(g_mutex);
  if (g_log) std::fprintf(g_log, "%u thread %s\n", thread, name ? name : "");
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get_table) {
  const char* path = std::getenv("STOKE_NVTX_LOG");
  if (!path || !get_table) return 0;
  g_log = std::fopen(path, "w");
  if (!g_log) return 0;
  std::setvbuf(g_log, nullptr, _IOLBF, 0);  // line-buffered: the log survives an exit without destructors
  const auto* callbacks = static_cast<const NvtxExportTableCallbacks*>(get_table(NVTX_ETID_CALLBACKS));
  if (!callbacks) return 0;
  NvtxFunctionTable table = nullptr;
  unsigned int size = 0;
  if (!callbacks->GetModuleFunctionTable(NVTX_CB_MODULE_CORE, &table, &size) || !table) return 0;
  if (size <= NVTX_CBID_CORE_NameOsThreadA) return 0;
  *table[NVTX_CBID_CORE_RangePushA] = reinterpret_cast<NvtxFunctionPointer>(&push_a);
  *table[NVTX_CBID_CORE_RangePop] = reinterpret_cast<NvtxFunctionPointer>(&pop);
  *table[NVTX_CBID_CORE_NameOsThreadA] = reinterpret_cast<NvtxFunctionPointer>(&name_os_thread_a);
  return 1;
}
