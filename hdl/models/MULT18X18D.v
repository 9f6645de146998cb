// Simulation model of the Lattice ECP5 MULT18X18D as rep-accel instantiates it
// (hdl/unit.py, `rep-accel rtl --dsp ecp5`): P = A * B, signed or unsigned per
// SIGNEDA/SIGNEDB, with the input (A, B), pipeline and output registers on CLK0,
// enabled by CE0 and synchronously reset by RST0; P is the product of the A and B
// sampled three rising edges earlier. Only this configuration is modelled: any other
// register setting, the C input, the shift chains and cascading stop the simulation.
// (Yosys knows MULT18X18D as a black box only; give this file to simulators, never
// to synthesis.)
`default_nettype none
module MULT18X18D (
    input  wire A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input  wire B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    /* verilator lint_off UNUSEDSIGNAL */  // the primitive's full port list: C, SOURCE*, CLK1-3, ... unused
    input  wire C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input  wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input  wire CLK0, CLK1, CLK2, CLK3,
    input  wire CE0, CE1, CE2, CE3,
    input  wire RST0, RST1, RST2, RST3,
    /* verilator lint_on UNUSEDSIGNAL */
    output wire P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24,
    output wire P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12,
    output wire P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    // The primitive's other settings: accepted (the instance sets them), not modelled.
    /* verilator lint_off UNUSEDPARAM */
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    /* verilator lint_on UNUSEDPARAM */
    parameter RESETMODE = "SYNC";

    localparam SUPPORTED =
        REG_INPUTA_CLK == "CLK0" && REG_INPUTA_CE == "CE0" && REG_INPUTA_RST == "RST0" &&
        REG_INPUTB_CLK == "CLK0" && REG_INPUTB_CE == "CE0" && REG_INPUTB_RST == "RST0" &&
        REG_INPUTC_CLK == "NONE" &&
        REG_PIPELINE_CLK == "CLK0" && REG_PIPELINE_CE == "CE0" && REG_PIPELINE_RST == "RST0" &&
        REG_OUTPUT_CLK == "CLK0" && REG_OUTPUT_CE == "CE0" && REG_OUTPUT_RST == "RST0" &&
        MULT_BYPASS == "DISABLED" && RESETMODE == "SYNC";
    initial begin
        if (!SUPPORTED) begin
            $display("MULT18X18D model: only input, pipeline and output registers on CLK0/CE0/RST0 are modelled");
            $finish;
        end
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_reg = 18'd0, b_reg = 18'd0;
    reg sa_reg = 1'b0, sb_reg = 1'b0;
    reg [35:0] pipeline_reg = 36'd0, output_reg = 36'd0;
    // 36-bit operands, sign- or zero-extended: the low 36 bits of their product are A * B.
    wire [35:0] a_ext = {{18{sa_reg & a_reg[17]}}, a_reg};
    wire [35:0] b_ext = {{18{sb_reg & b_reg[17]}}, b_reg};
    wire [35:0] product = a_ext * b_ext;

    always @(posedge CLK0) begin
        if (RST0) begin
            a_reg <= 18'd0;
            b_reg <= 18'd0;
            sa_reg <= 1'b0;
            sb_reg <= 1'b0;
            pipeline_reg <= 36'd0;
            output_reg <= 36'd0;
        end else if (CE0) begin
            a_reg <= a;
            b_reg <= b;
            sa_reg <= SIGNEDA;
            sb_reg <= SIGNEDB;
            pipeline_reg <= product;
            output_reg <= pipeline_reg;
        end
    end

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24,
            P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12,
            P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = output_reg;
endmodule
`default_nettype wire
