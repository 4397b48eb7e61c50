#include "apps/cli.h"

int main(int argc, char** argv) { return stoke::run_cli(argc, argv); }
