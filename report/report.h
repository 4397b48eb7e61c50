// The run report: RUNDIR/report.html, one self-contained page (inline CSS and inline SVG; no scripts, fonts,
// images or links to anything outside the file) that shows what a run did, drawn from the files the trainer
// writes. docs/REPORT.md describes the page. The charts are report/svg_chart.h's, the escaping report/html.h's,
// the reading of the folder report/run_files.h's.
//
// What it reads (every file and every field is optional; what is missing is shown as such):
//   metrics.jsonl  {"kind":"train"} lines: step, epoch, loss, acc, img_per_s, elapsed_s, and when present
//                  gpu_busy (fraction 0..1), input_stall (fraction 0..1), decoders (count), comm_share
//                  (fraction 0..1, data parallel only);
//                  {"kind":"epoch"} lines: epoch, step, train_loss, train_acc, val_loss, val_acc, val_auc,
//                  val_report {confusion, class_accuracy, class_auc, count}, img_per_s, seconds, elapsed_s,
//                  rss_mib, input_stall, and when present gpu_busy, decoders, comm_share.
//                  Unreadable lines (a line torn by a crash) are skipped and counted. elapsed_s restarting
//                  (a resumed run) is continued, so time axes cover the whole run.
//   config.json    model, data, val, backend, device, threads, input, classes, epochs, batch_size, optimizer,
//                  lr, schedule, params, train_images, val_images, decoders.
//   summary.json   model, backend, device, epochs, steps, seconds_total, final_val_acc, final_train_acc,
//                  final_val_report (used when no epoch line holds a report), corrupt_images, vanished_images
//                  (files deleted after indexing), skipped_steps, and "verdict" (a string, or an object whose fields
//                  are listed; "status"/"ok"/"pass" colour the box).
// A gpu_busy, input_stall or comm_share value above 1.5 is taken as a percentage already.
#pragma once

#include <string>

namespace stoke {

// The report page for a run folder, as a string. Throws stoke::UserError when run_dir is not a folder;
// missing or damaged files inside it only leave their parts of the page empty (and say so).
std::string render_report_html(const std::string& run_dir);

// For `stoke report`: throws stoke::UserError (one line naming the folder and what a run folder holds) when
// run_dir is not a folder, or holds neither config.json nor metrics.jsonl -- the page of such a folder would be
// empty, and a typo in --run should not leave a report.html in a folder that is not a run's.
void check_run_folder(const std::string& run_dir);

// Writes RUNDIR/report.html atomically (base/fs.h). Throws stoke::UserError when run_dir is not a
// folder, stoke::Error when the file cannot be written. Safe to call while the run is training (it reads a
// snapshot; a line being written is skipped), at every epoch's end or once at the end of the run.
void write_report_html(const std::string& run_dir);

}  // namespace stoke
