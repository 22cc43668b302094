/* The CLI's subcommands: one file each (cmd_<name>.c), one entry point each. */
#ifndef SM_CLI_COMMANDS_H
#define SM_CLI_COMMANDS_H

/* Each returns the process exit status; argv[0] is the subcommand's name. */
int cmd_bake(int argc, char **argv);
int cmd_boot(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_expose(int argc, char **argv);
int cmd_images(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_rmi(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_volume(int argc, char **argv);

#endif
